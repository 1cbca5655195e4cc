#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The Kubernetes manifests of fleet state (`istio/fleet-state`, issue #15),
//! rendered as `kubectl apply -k` would (`support/kustomize.rs`): Redis and
//! webdis are locked down exactly as the e2e store of `support/redis.rs`
//! (the one the scripts are tested against), every secret comes from the
//! one Secret, and traffic to both goes through the mesh with mTLS.

#[path = "support/kustomize.rs"]
mod kustomize;
mod support;

use serde_json::Value;
use std::collections::BTreeSet;
use support::redis::{REDIS_COMMANDS, REPLAY_COMMANDS, REPLAY_KEYS, REPLAY_USER, WEBDIS_COMMANDS};
use support::repo_root;

const SECRET: &str = "fleet-state-auth";

fn docs() -> Vec<Value> {
    kustomize::build(&repo_root().join("istio/fleet-state"))
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    of_kind(docs, kind)
        .into_iter()
        .find(|d| d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn redis_allows_only_the_scripts_commands_on_the_prefix_with_a_password() {
    let docs = docs();
    let redis = named(&docs, "Deployment", "fleet-state-redis");
    let container = &redis["spec"]["template"]["spec"]["containers"][0];
    let args = strings(&container["args"]);
    let user = args.iter().position(|a| a == "--user").expect("--user");
    let rule: Vec<&str> = args[user + 1..]
        .iter()
        .take_while(|a| !a.starts_with("--"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        rule[..6],
        [
            "default",
            "on",
            ">$(REDIS_PASSWORD)",
            "~cg:*",
            "resetchannels",
            "-@all"
        ]
    );
    let allowed: BTreeSet<&str> = rule[6..]
        .iter()
        .map(|c| c.trim_start_matches('+'))
        .collect();
    assert_eq!(allowed, REDIS_COMMANDS.into_iter().collect(), "{rule:?}");
    assert!(rule[6..].iter().all(|c| c.starts_with('+')));
    // The second user: `callback-guard replay`, read-only on the stream.
    let replay = user
        + 1
        + args[user + 1..]
            .iter()
            .position(|a| a == "--user")
            .expect("a second --user (cg-replay)");
    let rule: Vec<&str> = args[replay + 1..]
        .iter()
        .take_while(|a| !a.starts_with("--"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        rule[..6],
        [
            REPLAY_USER,
            "on",
            ">$(REPLAY_PASSWORD)",
            REPLAY_KEYS,
            "resetchannels",
            "-@all"
        ]
    );
    let replay_allowed: Vec<&str> = rule[6..]
        .iter()
        .map(|c| c.trim_start_matches('+'))
        .collect();
    assert_eq!(replay_allowed, REPLAY_COMMANDS, "{rule:?}");
    let replay_env = &container["env"][1];
    assert_eq!(replay_env["name"], "REPLAY_PASSWORD");
    assert_eq!(replay_env["valueFrom"]["secretKeyRef"]["name"], SECRET);
    let env = &container["env"][0];
    assert_eq!(env["name"], "REDIS_PASSWORD");
    assert_eq!(env["valueFrom"]["secretKeyRef"]["name"], SECRET);
    assert!(
        args.windows(2).any(|w| w == ["--save", ""]),
        "no persistence"
    );
}

#[test]
fn webdis_refuses_everything_without_auth_and_passes_only_the_filters_commands() {
    let docs = docs();
    let template = named(&docs, "ConfigMap", "fleet-state-webdis-template");
    let text = template["data"]["webdis.json.template"].as_str().unwrap();
    let config: Value = serde_json::from_str(text).expect("webdis template is JSON");
    let acl = config["acl"].as_array().unwrap();
    assert_eq!(acl.len(), 2);
    assert_eq!(strings(&acl[0]["disabled"]), ["*"]);
    assert!(acl[0].get("http_basic_auth").is_none());
    assert_eq!(acl[1]["http_basic_auth"], "WEBDIS_AUTH");
    assert_eq!(strings(&acl[1]["enabled"]), WEBDIS_COMMANDS);
    assert_eq!(config["redis_auth"], "REDIS_PASSWORD");
    assert_eq!(
        config["redis_host"],
        "fleet-state-redis.webhooks.svc.cluster.local"
    );
    // The placeholders are filled from the Secret before webdis starts.
    let webdis = named(&docs, "Deployment", "fleet-state-webdis");
    let init = &webdis["spec"]["template"]["spec"]["initContainers"][0];
    let script = strings(&init["command"]).join(" ");
    for var in ["REDIS_PASSWORD", "WEBDIS_AUTH"] {
        assert!(script.contains(&format!("s|{var}|${{{var}}}|")), "{script}");
        assert!(
            init["env"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["name"] == var && e["valueFrom"]["secretKeyRef"]["name"] == SECRET),
            "{var} from {SECRET}"
        );
    }
}

#[test]
fn both_services_are_reached_only_through_the_mesh_with_mtls() {
    let docs = docs();
    for app in ["fleet-state-redis", "fleet-state-webdis"] {
        let service = named(&docs, "Service", app);
        assert_eq!(service["spec"]["selector"]["app"], app);
        let host = format!("{app}.webhooks.svc.cluster.local");
        let pa = of_kind(&docs, "PeerAuthentication")
            .into_iter()
            .find(|d| d["spec"]["selector"]["matchLabels"]["app"] == app)
            .unwrap_or_else(|| panic!("no PeerAuthentication for {app}"));
        assert_eq!(pa["spec"]["mtls"]["mode"], "STRICT");
        let dr = of_kind(&docs, "DestinationRule")
            .into_iter()
            .find(|d| d["spec"]["host"] == host.as_str())
            .unwrap_or_else(|| panic!("no DestinationRule for {host}"));
        assert_eq!(dr["spec"]["trafficPolicy"]["tls"]["mode"], "ISTIO_MUTUAL");
        let authz = of_kind(&docs, "AuthorizationPolicy")
            .into_iter()
            .find(|d| d["spec"]["selector"]["matchLabels"]["app"] == app)
            .unwrap_or_else(|| panic!("no AuthorizationPolicy for {app}"));
        assert_eq!(authz["spec"]["action"], "ALLOW");
        let port = service["spec"]["ports"][0]["port"]
            .as_u64()
            .unwrap()
            .to_string();
        assert_eq!(
            strings(&authz["spec"]["rules"][0]["to"][0]["operation"]["ports"]),
            [port]
        );
        let deployment = named(&docs, "Deployment", app);
        let template = &deployment["spec"]["template"];
        assert_eq!(template["metadata"]["labels"]["app"], app);
        assert_eq!(template["spec"]["serviceAccountName"], app);
        named(&docs, "ServiceAccount", app);
    }
    // Redis answers webdis alone.
    let redis_authz = of_kind(&docs, "AuthorizationPolicy")
        .into_iter()
        .find(|d| d["spec"]["selector"]["matchLabels"]["app"] == "fleet-state-redis")
        .unwrap();
    assert_eq!(
        strings(&redis_authz["spec"]["rules"][0]["from"][0]["source"]["principals"]),
        ["cluster.local/ns/webhooks/sa/fleet-state-webdis"]
    );
    // Istio picks the protocol from the port name: webdis is HTTP.
    let webdis = named(&docs, "Service", "fleet-state-webdis");
    assert!(
        webdis["spec"]["ports"][0]["name"]
            .as_str()
            .unwrap()
            .starts_with("http")
    );
}

#[test]
fn the_deploy_page_names_the_cluster_the_filter_reaches() {
    let page = std::fs::read_to_string(repo_root().join("docs/deploy-fleet-state.md")).unwrap();
    let kustomization =
        std::fs::read_to_string(repo_root().join("istio/fleet-state/kustomization.yaml")).unwrap();
    let cluster = "outbound|7379||fleet-state-webdis.webhooks.svc.cluster.local";
    assert!(page.contains(cluster) && kustomization.contains(cluster));
    assert!(page.contains("callback_state_errors_total"));
}
