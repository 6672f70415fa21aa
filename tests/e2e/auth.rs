//! JWT auth: the host's policy before any instance is made, and the claims a
//! droplet sees.

use bytes::Bytes;
use http::Request;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use crate::support::{
    Host, HostBuilder, TEST_SECRET, claims_with_scope, fixture, hs256_token, now_s,
};

async fn get_with_token(host: &Host, path: &str, token: &str) -> crate::support::Reply {
    host.send(
        Request::get(path)
            .header("authorization", format!("Bearer {token}"))
            .body(Bytes::new())
            .unwrap(),
    )
    .await
}

fn sign(algorithm: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_string);
    encode(&header, claims, key).expect("sign")
}

fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(&std::fs::read(fixture("rsa-private.pem")).unwrap()).unwrap()
}

fn ec_key() -> EncodingKey {
    EncodingKey::from_ec_pem(&std::fs::read(fixture("ec-private.pem")).unwrap()).unwrap()
}

/// A host with an RSA public key, an HS256 secret, an issuer, and echo
/// behind `auth = "jwt"` with scope `echo:read`.
async fn protected_host() -> Host {
    HostBuilder::new()
        .droplet_with("echo", "echo", "auth = \"jwt\"\nscopes = [\"echo:read\"]\n")
        .env(
            "REGISTRY_PUBLIC_KEY",
            fixture("rsa-public.pem").to_str().unwrap(),
        )
        .env("JWT_SECRET", TEST_SECRET)
        .env("JWT_ISSUER", "https://registry.test")
        .start()
        .await
}

fn good_claims() -> Value {
    json!({
        "sub": "alice",
        "iss": "https://registry.test",
        "aud": "fullpotential.droplets",
        "exp": now_s() + 600,
        "scope": "echo:read other",
    })
}

#[tokio::test]
async fn valid_token_lets_the_droplet_see_its_claims() {
    let host = protected_host().await;
    let token = sign(Algorithm::RS256, &rsa_key(), None, &good_claims());
    let reply = get_with_token(&host, "/echo/", &token).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let caller = &reply.json()["caller"];
    assert_eq!(caller["subject"], "alice");
    assert_eq!(caller["issuer"], "https://registry.test");
    assert_eq!(caller["audience"], json!(["fullpotential.droplets"]));
    assert_eq!(caller["scopes"], json!(["echo:read", "other"]));
    assert_eq!(caller["claims"]["sub"], "alice");
    // HS256 under JWT_SECRET works too.
    let reply = get_with_token(&host, "/echo/", &hs256_token(&good_claims())).await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn tokens_without_the_configured_issuer_or_with_crit_are_401_and_valid_ones_pass() {
    let host = protected_host().await;
    let mut no_issuer = good_claims();
    no_issuer.as_object_mut().unwrap().remove("iss");
    let refused = get_with_token(&host, "/echo/", &hs256_token(&no_issuer)).await;
    let message = refused.assert_error(401, "unauthorized");
    assert!(message.contains("`iss`"), "{message}");
    assert_eq!(
        refused.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
    let mut header = Header::new(Algorithm::HS256);
    header.crit = Some(vec!["exp-ext".to_string()]);
    let critical = encode(
        &header,
        &good_claims(),
        &EncodingKey::from_secret(TEST_SECRET.as_bytes()),
    )
    .unwrap();
    let refused = get_with_token(&host, "/echo/", &critical).await;
    let message = refused.assert_error(401, "unauthorized");
    assert!(message.contains("crit"), "{message}");
    // No token at all: a bare challenge, not `invalid_token`.
    let missing = host.get("/echo/").await;
    missing.assert_error(401, "unauthorized");
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));
    let valid = get_with_token(&host, "/echo/", &hs256_token(&good_claims())).await;
    assert_eq!(valid.status, 200);
}

#[tokio::test]
async fn bad_tokens_are_401_with_a_bearer_challenge() {
    let host = protected_host().await;
    let rsa_public = std::fs::read(fixture("rsa-public.pem")).unwrap();
    let with = |change: Value| {
        let mut claims = good_claims();
        for (key, value) in change.as_object().unwrap() {
            claims[key] = value.clone();
        }
        claims
    };
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("malformed", Some("not-a-jwt".into())),
        (
            "expired",
            Some(sign(
                Algorithm::RS256,
                &rsa_key(),
                None,
                &with(json!({"exp": now_s() - 600})),
            )),
        ),
        (
            "not yet valid",
            Some(sign(
                Algorithm::RS256,
                &rsa_key(),
                None,
                &with(json!({"nbf": now_s() + 600})),
            )),
        ),
        (
            "wrong audience",
            Some(sign(
                Algorithm::RS256,
                &rsa_key(),
                None,
                &with(json!({"aud": "elsewhere"})),
            )),
        ),
        (
            "wrong issuer",
            Some(sign(
                Algorithm::RS256,
                &rsa_key(),
                None,
                &with(json!({"iss": "https://evil.test"})),
            )),
        ),
        (
            "bad signature",
            Some({
                let token = sign(Algorithm::RS256, &rsa_key(), None, &good_claims());
                let (rest, signature) = token.rsplit_once('.').unwrap();
                let flipped = if signature.starts_with('A') { "B" } else { "A" };
                format!("{rest}.{flipped}{}", &signature[1..])
            }),
        ),
        (
            "alg none",
            Some({
                use base64::Engine;
                let b64 =
                    |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
                format!(
                    "{}.{}.",
                    b64(br#"{"alg":"none","typ":"JWT"}"#),
                    b64(good_claims().to_string().as_bytes())
                )
            }),
        ),
        (
            "HS256 signed with the RSA public key",
            Some(sign(
                Algorithm::HS256,
                &EncodingKey::from_secret(&rsa_public),
                None,
                &good_claims(),
            )),
        ),
        (
            "ES256 with no EC key configured",
            Some(sign(Algorithm::ES256, &ec_key(), None, &good_claims())),
        ),
    ];
    for (case, token) in cases {
        let reply = match &token {
            Some(token) => get_with_token(&host, "/echo/", token).await,
            None => host.get("/echo/").await,
        };
        let message = reply.assert_error(401, "unauthorized");
        assert!(
            reply
                .header("www-authenticate")
                .is_some_and(|value| value.starts_with("Bearer")),
            "{case}: no Bearer challenge"
        );
        assert!(!message.is_empty(), "{case}");
    }
}

#[tokio::test]
async fn valid_token_without_the_scope_is_403() {
    let host = protected_host().await;
    let mut claims = good_claims();
    claims["scope"] = json!("other");
    let reply = get_with_token(
        &host,
        "/echo/",
        &sign(Algorithm::RS256, &rsa_key(), None, &claims),
    )
    .await;
    let message = reply.assert_error(403, "forbidden");
    assert!(message.contains("echo:read"), "{message}");
}

#[tokio::test]
async fn es256_keys_and_jwks_keys_by_kid_verify() {
    let host = HostBuilder::new()
        .droplet_with("echo", "echo", "auth = \"jwt\"\n")
        .env(
            "REGISTRY_PUBLIC_KEY",
            &std::fs::read_to_string(fixture("ec-public.pem")).unwrap(),
        )
        .env("JWKS_PATH", fixture("jwks.json").to_str().unwrap())
        .start()
        .await;
    let claims = claims_with_scope("x");
    let es = sign(Algorithm::ES256, &ec_key(), None, &claims);
    assert_eq!(get_with_token(&host, "/echo/", &es).await.status, 200);
    let by_kid = sign(Algorithm::RS256, &rsa_key(), Some("test-rsa"), &claims);
    assert_eq!(get_with_token(&host, "/echo/", &by_kid).await.status, 200);
    let unknown_kid = sign(Algorithm::RS256, &rsa_key(), Some("other"), &claims);
    get_with_token(&host, "/echo/", &unknown_kid)
        .await
        .assert_error(401, "unauthorized");
}

#[tokio::test]
async fn public_droplets_serve_anyone_and_see_valid_callers() {
    let host = HostBuilder::new()
        .droplet("echo", "echo")
        .env("JWT_SECRET", TEST_SECRET)
        .start()
        .await;
    let anonymous = host.get("/echo/").await;
    assert_eq!(anonymous.status, 200);
    assert_eq!(anonymous.json()["caller"], Value::Null);
    let reply = get_with_token(&host, "/echo/", &hs256_token(&claims_with_scope("a b"))).await;
    assert_eq!(reply.json()["caller"]["scopes"], json!(["a", "b"]));
    let invalid = get_with_token(&host, "/echo/", "garbage").await;
    assert_eq!(invalid.status, 200);
    assert_eq!(invalid.json()["caller"], Value::Null);
}

#[tokio::test]
async fn todo_example_full_lifecycle() {
    let host = HostBuilder::new()
        .droplet("todo", "todo")
        .env("JWT_SECRET", TEST_SECRET)
        .start()
        .await;
    let writer = hs256_token(&claims_with_scope("todo:write"));
    let reader = hs256_token(&claims_with_scope("todo:read"));
    let send = |method: &str, path: &str, token: Option<&str>, body: Value| {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = if body.is_null() {
            Bytes::new()
        } else {
            Bytes::from(body.to_string())
        };
        host.send(request.body(body).unwrap())
    };

    assert_eq!(
        send("POST", "/todo/todos", None, json!({"title": "x"}))
            .await
            .status,
        401
    );
    assert_eq!(
        send("POST", "/todo/todos", Some(&reader), json!({"title": "x"}))
            .await
            .status,
        403
    );
    // Bodies that are not a new todo are `invalid_json`, titles out of
    // range `bad_request`: both 400.
    for (bad, code) in [
        (json!({}), "invalid_json"),
        (json!({"title": ""}), "bad_request"),
        (json!({"title": "a".repeat(201)}), "bad_request"),
        (json!({"title": "x", "extra": 1}), "invalid_json"),
        (json!({"title": 5}), "invalid_json"),
    ] {
        let reply = send("POST", "/todo/todos", Some(&writer), bad.clone()).await;
        assert_eq!(reply.status, 400, "{bad}: {}", reply.text());
        assert_eq!(reply.json()["error"]["code"], code, "{bad}");
    }
    let mut ids = Vec::new();
    for title in ["write docs", "ship it", "celebrate"] {
        let created = send(
            "POST",
            "/todo/todos",
            Some(&writer),
            json!({"title": title}),
        )
        .await;
        assert_eq!(created.status, 201, "{}", created.text());
        assert_eq!(created.json()["title"], title);
        assert_eq!(created.json()["done"], false);
        ids.push(created.json()["id"].as_u64().unwrap());
    }
    // Reads are public.
    let first = send("GET", &format!("/todo/todos/{}", ids[0]), None, Value::Null).await;
    assert_eq!(first.json()["title"], "write docs");
    let page = send("GET", "/todo/todos?limit=2", None, Value::Null)
        .await
        .json();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_string();
    let rest = send(
        "GET",
        &format!("/todo/todos?limit=2&cursor={cursor}"),
        None,
        Value::Null,
    )
    .await
    .json();
    assert_eq!(rest["items"][0]["title"], "celebrate");
    assert_eq!(rest["next_cursor"], Value::Null);
    assert_eq!(
        send("GET", "/todo/todos?limit=0", None, Value::Null)
            .await
            .status,
        400
    );
    // Update and delete.
    let updated = send(
        "PUT",
        &format!("/todo/todos/{}", ids[1]),
        Some(&writer),
        json!({"done": true}),
    )
    .await;
    assert_eq!(updated.json()["done"], true);
    assert_eq!(updated.json()["title"], "ship it");
    assert_eq!(
        send(
            "PUT",
            &format!("/todo/todos/{}", ids[1]),
            Some(&writer),
            json!({"done": "yes"})
        )
        .await
        .status,
        400
    );
    assert_eq!(
        send(
            "DELETE",
            &format!("/todo/todos/{}", ids[0]),
            Some(&reader),
            Value::Null
        )
        .await
        .status,
        403
    );
    assert_eq!(
        send(
            "DELETE",
            &format!("/todo/todos/{}", ids[0]),
            Some(&writer),
            Value::Null
        )
        .await
        .status,
        204
    );
    assert_eq!(
        send("GET", &format!("/todo/todos/{}", ids[0]), None, Value::Null)
            .await
            .status,
        404
    );
    assert_eq!(
        send(
            "DELETE",
            &format!("/todo/todos/{}", ids[0]),
            Some(&writer),
            Value::Null
        )
        .await
        .status,
        404
    );
    assert_eq!(
        send("GET", "/todo/todos/abc", None, Value::Null)
            .await
            .status,
        400
    );
    let all = send("GET", "/todo/todos", None, Value::Null).await.json();
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn callers_tokens_stay_in_the_host_unless_the_manifest_forwards_them() {
    let host = HostBuilder::new()
        .droplet("echo", "echo")
        .droplet_with("relay", "echo", "forward_authorization = true\n")
        .env("JWT_SECRET", TEST_SECRET)
        .start()
        .await;
    let token = hs256_token(&claims_with_scope("droplets:admin"));
    let seen = |reply: &crate::support::Reply| -> Vec<String> {
        reply.json()["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| pair[0].as_str().unwrap().to_string())
            .collect()
    };
    let reply = get_with_token(&host, "/echo/", &token).await;
    assert_eq!(reply.status, 200);
    assert!(
        !seen(&reply).contains(&"authorization".to_string()),
        "{}",
        reply.text()
    );
    // The droplet still learns who called: the verified claims.
    assert_eq!(reply.json()["caller"]["scopes"], json!(["droplets:admin"]));
    let relayed = get_with_token(&host, "/relay/", &token).await;
    assert!(
        seen(&relayed).contains(&"authorization".to_string()),
        "{}",
        relayed.text()
    );
}
