//! Cross-org isolation: an org admin or member of org A gets 404 on every route of org B, and
//! nothing is written. Another tenant's things do not exist for you.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{expect_error, spawn_app};

#[tokio::test]
async fn callers_of_org_a_find_nothing_of_org_b() {
    let app = spawn_app().await;
    let a = app.org_with_users("a").await;
    let b = app.org_with_users("b").await;
    let cases = [
        (Method::GET, format!("/admin/orgs/{}/users", b.org), None),
        (Method::POST, format!("/admin/orgs/{}/users", b.org), Some(json!({ "name": "intruder", "isAdmin": true }))),
        (Method::POST, format!("/admin/orgs/{}/users/{}/apikey/rotate", b.org, b.member_id), Some(json!({}))),
        (Method::POST, format!("/admin/orgs/{}/users/{}/apikey/rotate", b.org, b.admin_id), Some(json!({}))),
        (Method::DELETE, format!("/admin/orgs/{}/users/{}", b.org, b.member_id), None),
        (Method::GET, format!("/users/org/{}", b.member_id), None),
        (Method::GET, format!("/users/org/{}", b.admin_id), None),
        // Org B's users addressed through org A's path are not org A's users either.
        (Method::POST, format!("/admin/orgs/{}/users/{}/apikey/rotate", a.org, b.member_id), Some(json!({}))),
        (Method::DELETE, format!("/admin/orgs/{}/users/{}", a.org, b.member_id), None),
    ];
    let before = app.event_count().await;
    for (who, key) in [("org A admin", &a.admin_key), ("org A member", &a.member_key)] {
        for (method, path, body) in &cases {
            let res = app.request(method.clone(), path, Some(key), body.clone()).await;
            let status = res.status();
            // A member is refused admin routes of its own org with 403; everything of org B is 404.
            let own_org_admin_route = path.starts_with(&format!("/admin/orgs/{}", a.org)) && who == "org A member";
            let expected = if own_org_admin_route { StatusCode::FORBIDDEN } else { StatusCode::NOT_FOUND };
            assert_eq!(status, expected, "{who}: {method} {path}");
            expect_error(res, expected).await;
        }
    }
    assert_eq!(app.event_count().await, before, "nothing was written");
    // Org B's keys still work and its users are untouched.
    for key in [&b.admin_key, &b.member_key] {
        assert_eq!(app.get("/users/me", key).await.status(), StatusCode::OK);
    }
}
