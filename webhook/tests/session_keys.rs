//! The session signing key and its published public half, over the in-memory API: the
//! controller makes the key once, publishes only its public half, and a rotation publishes both
//! keys; the webhook reads the published keys and nothing else.

mod controller_common;

use controller_common::harness;
use serde_json::json;
use tls_steal_webhook::tickets::{load_or_create, publish, published, split_keys};

const NS: &str = "tls-steal";
const SECRET: &str = "tls-steal-session-keys";
const CONFIGMAP: &str = "tls-steal-session-public-keys";
const SECRET_PATH: &str = "/api/v1/namespaces/tls-steal/secrets/tls-steal-session-keys";
const CONFIGMAP_PATH: &str =
    "/api/v1/namespaces/tls-steal/configmaps/tls-steal-session-public-keys";

#[tokio::test]
async fn the_key_is_made_once_and_only_its_public_half_is_published() {
    let h = harness(vec![], 0);
    let client = h.ctx.client.clone();
    // Before the controller's first start the webhook finds nothing (and waits).
    assert_eq!(
        published(client.clone(), NS, CONFIGMAP).await.unwrap(),
        None
    );

    let keys = load_or_create(client.clone(), NS, SECRET).await.unwrap();
    assert_eq!(keys.public.len(), 1);
    publish(client.clone(), NS, CONFIGMAP, &keys.public)
        .await
        .unwrap();
    assert_eq!(
        published(client.clone(), NS, CONFIGMAP).await.unwrap(),
        Some(keys.public.clone())
    );
    // The ConfigMap holds the public key alone; the private one stays in the Secret.
    let cm = h.object(CONFIGMAP_PATH);
    assert_eq!(cm["data"], json!({"keys": keys.public[0]}));
    assert_eq!(
        cm["metadata"]["labels"]["app.kubernetes.io/part-of"],
        "tls-steal"
    );
    assert!(h.object(SECRET_PATH)["data"]["current"].is_string());

    // A second replica (or a restart) loads the same key and writes nothing.
    let again = load_or_create(client.clone(), NS, SECRET).await.unwrap();
    assert_eq!(again.public, keys.public);
    publish(client.clone(), NS, CONFIGMAP, &again.public)
        .await
        .unwrap();
    drop(client);
    let log = h.finish().await;
    let writes: Vec<String> = log
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        writes,
        [
            "POST /api/v1/namespaces/tls-steal/secrets",
            "POST /api/v1/namespaces/tls-steal/configmaps"
        ]
    );
}

#[tokio::test]
async fn a_rotation_publishes_the_new_key_first_and_keeps_the_old_one() {
    let h = harness(vec![], 0);
    let client = h.ctx.client.clone();
    let old = load_or_create(client.clone(), NS, SECRET).await.unwrap();
    publish(client.clone(), NS, CONFIGMAP, &old.public)
        .await
        .unwrap();
    // The documented rotation: `current` moved to `previous`, `current` deleted.
    {
        let mut objects = h.objects.lock().unwrap();
        let secret = objects.get_mut(SECRET_PATH).unwrap();
        let current = secret["data"]["current"].take();
        secret["data"] = json!({"previous": current});
    }
    let new = load_or_create(client.clone(), NS, SECRET).await.unwrap();
    assert_eq!(new.public.len(), 2);
    assert_eq!(new.public[1], old.public[0]);
    assert_ne!(new.public[0], old.public[0]);
    publish(client.clone(), NS, CONFIGMAP, &new.public)
        .await
        .unwrap();
    assert_eq!(
        published(client, NS, CONFIGMAP).await.unwrap(),
        Some(new.public.clone())
    );
    h.finish().await;
}

#[test]
fn key_lists_are_split_and_trimmed() {
    assert_eq!(split_keys(" a, b ,,c "), ["a", "b", "c"]);
    assert!(split_keys(" , ").is_empty());
}
