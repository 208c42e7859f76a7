use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{expect_error, expect_json, kv_body, kv_path, spawn_app};

#[tokio::test]
async fn put_creates_then_updates_and_get_returns_the_stored_ciphertext() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    let res = app.put("/kv/db-url", &fx.member_key, kv_body(10, 1)).await;
    assert_eq!(res.headers()["etag"], "\"1\"");
    let created = expect_json(res, StatusCode::CREATED).await;
    assert_eq!((created["key"].as_str(), created["version"].as_u64()), (Some("db-url"), Some(1)));

    let updated = expect_json(app.put("/kv/db-url", &fx.member_key, kv_body(12, 2)).await, StatusCode::OK).await;
    assert_eq!(updated["version"], 2);

    let current = expect_json(app.get("/kv/db-url", &fx.member_key).await, StatusCode::OK).await;
    assert_eq!(current["version"], 2);
    assert_eq!(current["ciphertextB64"], kv_body(12, 2)["ciphertextB64"]);
    assert_eq!(current["encryptedAesKeyEccB64"], kv_body(12, 2)["encryptedAesKeyEccB64"]);
    assert_eq!(current["encryptedAesKeyKyberB64"], kv_body(12, 2)["encryptedAesKeyKyberB64"]);
    let older = expect_json(app.get("/kv/db-url?version=1", &fx.member_key).await, StatusCode::OK).await;
    assert_eq!(older["ciphertextB64"], kv_body(10, 1)["ciphertextB64"]);
    expect_error(app.get("/kv/db-url?version=3", &fx.member_key).await, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn delete_is_soft_and_writing_again_starts_a_new_life_with_a_higher_version() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    expect_json(app.put("/kv/token", &fx.member_key, kv_body(5, 1)).await, StatusCode::CREATED).await;
    expect_json(app.put("/kv/token", &fx.member_key, kv_body(5, 2)).await, StatusCode::OK).await;
    assert_eq!(app.delete("/kv/token", &fx.member_key).await.status(), StatusCode::NO_CONTENT);

    expect_error(app.get("/kv/token", &fx.member_key).await, StatusCode::NOT_FOUND).await;
    expect_error(app.get("/kv/token?version=1", &fx.member_key).await, StatusCode::NOT_FOUND).await;
    let listing = expect_json(app.get("/kv", &fx.member_key).await, StatusCode::OK).await;
    assert_eq!(listing["keys"], json!([]));
    expect_error(app.delete("/kv/token", &fx.member_key).await, StatusCode::NOT_FOUND).await;

    let reborn = expect_json(app.put("/kv/token", &fx.member_key, kv_body(5, 3)).await, StatusCode::CREATED).await;
    assert_eq!(reborn["version"], 3, "versions keep counting across lives");
    expect_error(app.get("/kv/token?version=2", &fx.member_key).await, StatusCode::NOT_FOUND).await;

    let history = expect_json(app.get("/kv/token/versions", &fx.member_key).await, StatusCode::OK).await;
    let versions: Vec<_> = history["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (v["version"].as_i64().unwrap(), v["deleted"].as_bool().unwrap(), v["userId"].as_str().unwrap().to_owned())
        })
        .collect();
    let me = fx.member_id.to_string();
    assert_eq!(versions, vec![(1, true, me.clone()), (2, true, me.clone()), (3, false, me)]);
    expect_error(app.get("/kv/never-written/versions", &fx.member_key).await, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn if_match_makes_a_write_a_check_and_set() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    let write = |version: &'static str, fill: u8| {
        app.client
            .put(format!("{}/kv/cas", app.backend))
            .header("X-Api-Key", &fx.member_key)
            .header("If-Match", version)
            .json(&kv_body(4, fill))
            .send()
    };
    assert_eq!(write("0", 1).await.unwrap().status(), StatusCode::CREATED, "0: create only if absent");
    let conflict = expect_json(write("0", 2).await.unwrap(), StatusCode::CONFLICT).await;
    assert_eq!(conflict["currentVersion"], 1);
    assert_eq!(write("\"1\"", 3).await.unwrap().status(), StatusCode::OK);
    let stale = expect_json(write("1", 4).await.unwrap(), StatusCode::CONFLICT).await;
    assert_eq!(stale["currentVersion"], 2);
    assert!(stale["error"].as_str().unwrap().contains("current version is 2"));
    expect_error(write("latest", 5).await.unwrap(), StatusCode::BAD_REQUEST).await;
    let current = expect_json(app.get("/kv/cas", &fx.member_key).await, StatusCode::OK).await;
    assert_eq!(current["ciphertextB64"], kv_body(4, 3)["ciphertextB64"], "refused writes changed nothing");
}

#[tokio::test]
async fn listing_pages_through_live_keys_in_name_order() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    for key in ["e", "a", "d", "b", "c"] {
        expect_json(app.put_kv(key, &fx.member_key, 1).await, StatusCode::CREATED).await;
    }
    expect_json(app.put_kv("c", &fx.member_key, 1).await, StatusCode::OK).await;
    app.delete("/kv/d", &fx.member_key).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/kv?limit=2&cursor={c}"),
            None => "/kv?limit=2".to_owned(),
        };
        let page = expect_json(app.get(&path, &fx.member_key).await, StatusCode::OK).await;
        for k in page["keys"].as_array().unwrap() {
            seen.push((k["key"].as_str().unwrap().to_owned(), k["version"].as_i64().unwrap()));
            assert!(k["createdUtc"].is_string() && k["updatedUtc"].is_string());
        }
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let expected: Vec<_> = [("a", 1), ("b", 1), ("c", 2), ("e", 1)].iter().map(|(k, v)| (k.to_string(), *v)).collect();
    assert_eq!(seen, expected);
    for bad in ["/kv?limit=0", "/kv?limit=1001", "/kv?limit=x", "/kv?cursor=%%%", "/kv?sort=asc"] {
        expect_error(app.get(bad, &fx.member_key).await, StatusCode::BAD_REQUEST).await;
    }
}

#[tokio::test]
async fn key_names_are_one_to_256_bytes_of_utf8_without_control_characters() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    for (name, ok) in [
        ("k".repeat(256), true),
        ("é".repeat(128), true),
        ("path/with/slashes and spaces".to_owned(), true),
        ("k".repeat(257), false),
        ("é".repeat(129), false),
        ("line\nbreak".to_owned(), false),
        ("nul\0".to_owned(), false),
    ] {
        let res = app.put_kv(&name, &fx.member_key, 1).await;
        if ok {
            expect_json(res, StatusCode::CREATED).await;
            let got = expect_json(app.get(&kv_path(&name), &fx.member_key).await, StatusCode::OK).await;
            assert_eq!(got["key"], name.as_str());
        } else {
            let msg = expect_error(res, StatusCode::BAD_REQUEST).await;
            assert!(msg.contains("key name"), "{name:?}: {msg}");
        }
    }
}

#[tokio::test]
async fn malformed_kv_writes_are_refused_and_nothing_is_written() {
    let app = spawn_app().await;
    let fx = app.org_with_users("acme").await;
    let mut cases = vec![];
    for (field, value, expected) in [
        ("ciphertextB64", json!("not base64"), "ciphertextB64 is not valid base64"),
        ("ciphertextB64", json!("AAAA"), "ciphertextB64 must decode to between 29"),
        ("encryptedAesKeyEccB64", json!(""), "encryptedAesKeyEccB64"),
        ("encryptedAesKeyKyberB64", json!(12), "expected a string"),
    ] {
        let mut body = kv_body(3, 1);
        body[field] = value;
        cases.push((body, expected));
    }
    let mut extra = kv_body(3, 1);
    extra["valueB64"] = json!("cGxhaW4=");
    cases.push((extra, "unknown field `valueB64`"));
    let before = app.event_count().await;
    for (body, expected) in cases {
        let msg = expect_error(app.put("/kv/x", &fx.member_key, body).await, StatusCode::BAD_REQUEST).await;
        assert!(msg.contains(expected), "expected {expected:?} in {msg:?}");
    }
    assert_eq!(app.event_count().await, before);
}

#[tokio::test]
async fn each_user_has_their_own_namespace() {
    let app = spawn_app().await;
    let a = app.org_with_users("a").await;
    let b = app.org_with_users("b").await;
    expect_json(app.put_kv("shared-name", &a.member_key, 3).await, StatusCode::CREATED).await;
    for key in [&a.admin_key, &b.member_key, &b.admin_key] {
        expect_error(app.get("/kv/shared-name", key).await, StatusCode::NOT_FOUND).await;
        expect_error(app.get("/kv/shared-name/versions", key).await, StatusCode::NOT_FOUND).await;
        expect_error(app.delete("/kv/shared-name", key).await, StatusCode::NOT_FOUND).await;
    }
    // Another user writing the same name makes their own record.
    expect_json(app.put_kv("shared-name", &b.member_key, 3).await, StatusCode::CREATED).await;
    assert_eq!(expect_json(app.get("/kv/shared-name", &a.member_key).await, StatusCode::OK).await["version"], 1);
    expect_error(
        app.request(Method::PUT, "/kv/x", Some(&app.global_admin_key), Some(kv_body(1, 1))).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    expect_error(app.request(Method::GET, "/kv", None, None).await, StatusCode::UNAUTHORIZED).await;
}
