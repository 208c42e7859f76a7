//! Cross-tenant isolation as a matrix: two orgs, A and B, built through the public routes with one
//! of everything (`fixture`); every operation of the Backend's and the Proxy's OpenAPI documents
//! (the Cloud API included) has one entry in `table`. Every principal of org A (its org admin, an
//! ordinary user and its Cloud API key on the Backend and the Proxy; its Cloud owner, admin,
//! developer and viewer with session tokens) calls every operation with org B's ids, on the
//! operation's own listener and, for the routes the Proxy passes through, on the Proxy too. Then
//! org B's own principals call the same table with B's ids, which must succeed: the refusals A got
//! come from isolation, not from malformed requests.
//!
//! What "nothing crosses" means, per call of A's:
//! - a route that addresses B's things (`Tenant`, `Global`) answers 403 or 404 (401 when the
//!   principal's kind of credential is not the route's), with a `{ "error": ... }` body, and
//!   appends no event at all;
//! - where a request has both a container and things inside it, A also sends its own container
//!   (its org, its record, its file) with B's things inside (B's user, share, member, invite, key):
//!   refused with a 4xx (a rule of A's own record may answer first), nothing appended;
//! - the global admin's routes are refused to A's principals for A's own org too;
//! - a route that acts on the caller alone (`Own`) or on nobody (`Public`) may answer anything but a
//!   5xx, and the events it appends mention nothing of B's;
//! - no answer (body or headers) holds anything that identifies B (ids, names, key names, emails,
//!   tokens, ciphertexts) that the request itself did not carry.
//!
//! Every failure is collected, then all are reported at once, with what each A principal was
//! answered per operation (`--nocapture` shows it on success).

mod fixture;
mod table;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use self::fixture::{Env, Tenant, SECRET};

/// Which OpenAPI document an operation is in (and so which listener serves it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Doc {
    Backend,
    Proxy,
}

/// What an operation can reach of a tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// It names the tenant's things (in its path, query or body): refused to anyone else.
    Tenant,
    /// It acts on the caller's own things only (a listing, the caller's record, a creation).
    Own,
    /// The global admin's: refused to every org principal, for any org.
    Global,
    /// Anonymous: it has no tenant.
    Public,
}

/// When an operation runs. A's calls run reads, writes, removals, then its own creations (which
/// make things of A's under B's names); B's run reads, writes, creations, then removals, so each
/// destructive one comes after everything that needs what it destroys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Read,
    Write,
    Create,
    Remove,
}

impl Phase {
    fn rank(self, cross: bool) -> u8 {
        match (self, cross) {
            (Phase::Read, _) => 0,
            (Phase::Write, _) => 1,
            (Phase::Remove, true) | (Phase::Create, false) => 2,
            (Phase::Create, true) | (Phase::Remove, false) => 3,
        }
    }
}

/// A principal of a tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    Anonymous,
    GlobalAdmin,
    /// The org admin (a Backend user with keys).
    Admin,
    /// An ordinary user with keys: the owner of the records, files and recovery shares.
    Member,
    /// The Cloud API key (the org's project user, an org admin, with keys).
    ApiKey,
    /// Users without keys yet.
    Fresh,
    Fresh2,
    /// Cloud members, with session tokens.
    Owner,
    CloudAdmin,
    Developer,
    Viewer,
    /// An identity invited to the org, not a member yet.
    Joiner,
}

/// A's principals: everyone who can act for org A.
const CROSS_PRINCIPALS: [Who; 7] =
    [Who::Admin, Who::Member, Who::ApiKey, Who::Owner, Who::CloudAdmin, Who::Developer, Who::Viewer];

/// The Backend routes the Proxy passes through unchanged (`api/src/proxy/mod.rs`).
const PASSED_THROUGH: [&str; 4] = ["/admin/", "/auth/", "/cloud/", "/webhooks/"];

/// The ids a request is filled from: see `table`.
pub struct Target<'a> {
    pub outer: &'a Tenant,
    pub inner: &'a Tenant,
    /// A call of the other tenant's.
    pub cross: bool,
}

impl Target<'_> {
    /// A credential only its own tenant holds: the other tenant guesses.
    pub fn secret(&self, own: &str, guess: &str) -> String {
        if self.cross { guess } else { own }.to_owned()
    }
}

/// One row of the table.
pub struct Case {
    doc: Doc,
    /// `METHOD /path/{param}`, exactly as the OpenAPI document has it.
    route: &'static str,
    reach: Reach,
    phase: Phase,
    /// Who of the tenant uses it in the positive control.
    by: Who,
    fill: fn(&Target) -> Call,
}

impl Case {
    pub fn new(doc: Doc, route: &'static str, reach: Reach, phase: Phase, by: Who, fill: fn(&Target) -> Call) -> Case {
        Case { doc, route, reach, phase, by, fill }
    }
}

/// What a request carries besides its credentials.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Call {
    params: Vec<(&'static str, String)>,
    query: Vec<(&'static str, String)>,
    headers: Vec<(String, String)>,
    body: Option<Value>,
}

pub fn call() -> Call {
    Call::default()
}

impl Call {
    pub fn param(mut self, name: &'static str, value: impl ToString) -> Self {
        self.params.push((name, value.to_string()));
        self
    }
    pub fn query(mut self, name: &'static str, value: impl ToString) -> Self {
        self.query.push((name, value.to_string()));
        self
    }
    pub fn header(mut self, name: impl Into<String>, value: impl ToString) -> Self {
        self.headers.push((name.into(), value.to_string()));
        self
    }
    pub fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }
}

/// How an operation authenticates, from its document's `security`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Surface {
    Public,
    /// `X-Api-Key` on the Backend.
    Backend,
    /// `X-Api-Key` and `X-User-Secret` on the Proxy.
    Proxy,
    /// `Authorization: Bearer` on the Cloud API.
    Cloud,
}

/// The documented operations: (document, `METHOD /path`, surface).
async fn documented(env: &Env) -> Vec<(Doc, String, Surface)> {
    let mut out = Vec::new();
    for (doc, base) in [(Doc::Backend, &env.app.backend), (Doc::Proxy, &env.app.proxy)] {
        let spec: Value =
            env.app.client.get(format!("{base}/openapi.json")).send().await.unwrap().json().await.unwrap();
        for (path, item) in spec["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if !["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                    continue;
                }
                let schemes: BTreeSet<String> = op["security"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|s| s.as_object().unwrap().keys().cloned())
                    .collect();
                let surface = if schemes.contains("bearer") {
                    Surface::Cloud
                } else if schemes.is_empty() {
                    Surface::Public
                } else if doc == Doc::Proxy {
                    Surface::Proxy
                } else {
                    Surface::Backend
                };
                out.push((doc, format!("{} {path}", method.to_uppercase()), surface));
            }
        }
    }
    out
}

#[derive(Clone, Debug)]
enum Credential {
    None,
    ApiKey(String),
    /// An identity-provider subject; a session token is minted per request.
    Bearer(String),
}

fn credential(env: &Env, tenant: &Tenant, who: Who) -> Credential {
    let key = |k: &str| Credential::ApiKey(k.to_owned());
    let bearer = |s: &str| Credential::Bearer(s.to_owned());
    match who {
        Who::Anonymous => Credential::None,
        Who::GlobalAdmin => key(&env.app.global_admin_key),
        Who::Admin => key(&tenant.admin.key),
        Who::Member => key(&tenant.user.key),
        Who::ApiKey => key(&tenant.key.key),
        Who::Fresh => key(&tenant.fresh.key),
        Who::Fresh2 => key(&tenant.fresh2.key),
        Who::Owner => bearer(&tenant.owner),
        Who::CloudAdmin => bearer(&tenant.cloud_admin),
        Who::Developer => bearer(&tenant.developer),
        Who::Viewer => bearer(&tenant.viewer),
        Who::Joiner => bearer(&tenant.joiner),
    }
}

/// A request as sent, and its answer.
struct Exchange {
    request: String,
    status: StatusCode,
    answer: String,
    answer_headers: String,
}

impl Exchange {
    fn error_body(&self) -> bool {
        serde_json::from_str::<Value>(&self.answer)
            .ok()
            .and_then(|v| v["error"].as_str().map(|e| !e.is_empty()))
            .unwrap_or(false)
    }

    /// The markers the answer holds that the request did not carry.
    fn leaked<'m>(&self, markers: &'m [String]) -> Vec<&'m str> {
        markers
            .iter()
            .filter(|m| {
                (self.answer.contains(m.as_str()) || self.answer_headers.contains(m.as_str()))
                    && !self.request.contains(m.as_str())
            })
            .map(String::as_str)
            .collect()
    }

    fn describe(&self) -> String {
        let answer: String = self.answer.chars().take(300).collect();
        format!("{} → {} {answer}", self.request.lines().next().unwrap_or_default(), self.status)
    }
}

fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The concrete path of `route` (`METHOD /path/{param}`) with `call`'s parameters, or why not.
fn concrete(route: &str, call: &Call) -> Result<(Method, String), String> {
    let (method, template) = route.split_once(' ').unwrap();
    let mut path = template.to_owned();
    for (name, value) in &call.params {
        let placeholder = format!("{{{name}}}");
        if !path.contains(&placeholder) {
            return Err(format!("{route}: the table fills {placeholder}, which the route does not have"));
        }
        path = path.replace(&placeholder, &encode(value));
    }
    if path.contains('{') {
        return Err(format!("{route}: the table leaves a path parameter unfilled: {path}"));
    }
    if !call.query.is_empty() {
        path = format!("{path}?{}", serde_urlencoded::to_string(&call.query).unwrap());
    }
    Ok((method.parse().unwrap(), path))
}

async fn send(
    env: &Env,
    base: &str,
    surface: Surface,
    credential: &Credential,
    address: Option<&str>,
    route: &str,
    call: &Call,
) -> Result<Exchange, String> {
    let (method, path) = concrete(route, call)?;
    let mut headers: Vec<(String, String)> = call.headers.clone();
    match credential {
        Credential::None => {}
        Credential::ApiKey(key) => headers.push(("X-Api-Key".into(), key.clone())),
        Credential::Bearer(sub) => headers.push(("Authorization".into(), format!("Bearer {}", env.idp.token(sub)))),
    }
    if surface == Surface::Proxy && !matches!(credential, Credential::None) {
        headers.push(("X-User-Secret".into(), SECRET.into()));
    }
    if let Some(address) = address {
        headers.push(("X-Forwarded-For".into(), address.to_owned()));
    }
    let mut req = env.app.client.request(method.clone(), format!("{base}{path}"));
    for (name, value) in &headers {
        req = req.header(name.as_str(), value.as_str());
    }
    if let Some(body) = &call.body {
        req = req.json(body);
    }
    let res = req.send().await.map_err(|e| format!("{method} {path}: not sent: {e}"))?;
    let status = res.status();
    let answer_headers: String =
        res.headers().iter().map(|(n, v)| format!("{n}: {}\n", v.to_str().unwrap_or(""))).collect();
    let answer = res.text().await.unwrap_or_default();
    let request = format!(
        "{method} {path}\n{}\n{}",
        headers.iter().map(|(n, v)| format!("{n}: {v}")).collect::<Vec<_>>().join("\n"),
        call.body.as_ref().map(Value::to_string).unwrap_or_default()
    );
    Ok(Exchange { request, status, answer, answer_headers })
}

async fn last_event(env: &Env) -> i64 {
    sqlx::query_scalar("SELECT coalesce(max(global_id), 0) FROM events").fetch_one(&env.app.pool).await.unwrap()
}

/// The events appended after `since`, as text.
async fn events_after(env: &Env, since: i64) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT aggregate_type || ' ' || aggregate_id || ' ' || event_type || ' ' || payload::text || ' ' || metadata::text
         FROM events WHERE global_id > $1 ORDER BY global_id",
    )
    .bind(since)
    .fetch_all(&env.app.pool)
    .await
    .unwrap()
}

/// Whose ids a cross-tenant call carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    /// B's.
    Theirs,
    /// A's own container (org, record, file) with B's things inside it.
    Mixed,
    /// A's own (the global admin's routes only).
    Own,
}

impl Variant {
    fn describe(self) -> &'static str {
        match self {
            Variant::Theirs => "B's ids",
            Variant::Mixed => "A's own with B's ids inside",
            Variant::Own => "A's own ids",
        }
    }
}

/// What an A principal's call must answer.
fn refusal_expected(reach: Reach, surface: Surface, credential: &Credential) -> Option<&'static [u16]> {
    let kind_applies = match (surface, credential) {
        (Surface::Public, _) => return None,
        (Surface::Cloud, Credential::Bearer(_)) => true,
        (Surface::Backend | Surface::Proxy, Credential::ApiKey(_)) => true,
        _ => false,
    };
    match (kind_applies, reach) {
        (false, _) => Some(&[401]),
        (true, Reach::Tenant | Reach::Global) => Some(&[403, 404]),
        (true, Reach::Own | Reach::Public) => None,
    }
}

/// The table's cases in its order (which runs the destructive operations last), each with its
/// documented surface; every documented operation must have exactly one case and every case must be
/// a documented operation.
fn plan<'c>(
    cases: &'c [Case],
    documented: &[(Doc, String, Surface)],
    failures: &mut Vec<String>,
) -> Vec<(&'c Case, Surface)> {
    for (doc, route, _) in documented {
        match cases.iter().filter(|c| c.doc == *doc && c.route == route).count() {
            0 => failures.push(format!("no case for {route} ({doc:?} document)")),
            1 => {}
            _ => failures.push(format!("more than one case for {route} ({doc:?} document)")),
        }
    }
    let mut plan = Vec::new();
    for case in cases {
        match documented.iter().find(|(doc, route, _)| *doc == case.doc && route == case.route) {
            None => failures.push(format!("a case for {} ({:?}), which no document has", case.route, case.doc)),
            Some((_, route, surface)) if (case.reach == Reach::Public) != (*surface == Surface::Public) => failures
                .push(format!("{route}: the table says {:?}, the document's security says {surface:?}", case.reach)),
            Some((_, _, surface)) => plan.push((case, *surface)),
        }
    }
    plan
}

/// The requests A's principals send for `case`.
fn variants(case: &Case, a: &Tenant, b: &Tenant) -> Vec<(Variant, Call)> {
    let theirs = (case.fill)(&Target { outer: b, inner: b, cross: true });
    let mixed = (case.fill)(&Target { outer: a, inner: b, cross: true });
    let own = (case.fill)(&Target { outer: a, inner: a, cross: true });
    match case.reach {
        // B's ids; and, where a request has both, A's own container with B's things inside it.
        Reach::Tenant if mixed != theirs && mixed != own => vec![(Variant::Theirs, theirs), (Variant::Mixed, mixed)],
        Reach::Tenant => vec![(Variant::Theirs, theirs)],
        // The global admin's routes, for B's org and for A's own alike.
        Reach::Global if own != theirs => vec![(Variant::Theirs, theirs), (Variant::Own, own)],
        Reach::Global => vec![(Variant::Theirs, theirs)],
        // The caller's own things, under B's names.
        Reach::Own | Reach::Public => vec![(Variant::Theirs, mixed)],
    }
}

/// The listeners that serve `case`: its own, and the Proxy for the routes it passes through.
fn listeners<'e>(env: &'e Env, case: &Case) -> Vec<(&'static str, &'e str)> {
    let (_, template) = case.route.split_once(' ').unwrap();
    match case.doc {
        Doc::Proxy => vec![("Proxy", &env.app.proxy)],
        Doc::Backend if PASSED_THROUGH.iter().any(|p| template.starts_with(p)) => {
            vec![("Backend", &env.app.backend), ("Proxy", &env.app.proxy)]
        }
        Doc::Backend => vec![("Backend", &env.app.backend)],
    }
}

/// What is wrong with an answer to A's principal, and with the events its call appended.
fn crossings(
    case: &Case,
    variant: Variant,
    refusal: Option<&[u16]>,
    exchange: &Exchange,
    appended: &[String],
    b: &Tenant,
) -> Vec<String> {
    let mut out = Vec::new();
    let status = exchange.status.as_u16();
    match refusal {
        // A's own container with B's things inside may be refused for what it is to A (a
        // check-and-set, a rule of A's own record) before B's ids are even looked at.
        Some([403, 404]) if variant == Variant::Mixed && (400..500).contains(&status) => {}
        Some(allowed) if !allowed.contains(&status) => {
            out.push(format!("expected {allowed:?}, got {}", exchange.describe()))
        }
        None if status >= 500 => out.push(format!("a server error: {}", exchange.describe())),
        _ => {}
    }
    if status >= 400 && !exchange.error_body() {
        out.push(format!("an error without an {{\"error\"}} body: {}", exchange.describe()));
    }
    let leaked = exchange.leaked(&b.markers);
    if !leaked.is_empty() {
        out.push(format!("the answer holds B's {leaked:?}: {}", exchange.describe()));
    }
    let refused = matches!(case.reach, Reach::Tenant | Reach::Global);
    for event in appended {
        let mentions: Vec<&String> =
            b.markers.iter().filter(|m| event.contains(m.as_str()) && !exchange.request.contains(m.as_str())).collect();
        if refused || !mentions.is_empty() {
            out.push(format!("appended {event} (mentions B's {mentions:?})"));
        }
    }
    out
}

#[tokio::test]
async fn no_principal_of_one_org_reaches_anything_of_another_on_any_route() {
    let started = Instant::now();
    let env = Env::start().await;
    let a = Tenant::build(&env, "A", false).await;
    let b = Tenant::build(&env, "B", true).await;
    let built = started.elapsed();
    let cases = table::cases();
    let mut failures = Vec::new();
    let documented = documented(&env).await;
    let plan = plan(&cases, &documented, &mut failures);

    // Org A's principals, with org B's ids.
    let mut cross = plan.clone();
    cross.sort_by_key(|(case, _)| case.phase.rank(true));
    let (mut calls, mut variant_count) = (0, 0);
    let mut seen: BTreeMap<&str, BTreeSet<u16>> = BTreeMap::new();
    for (case, surface) in &cross {
        let targets = variants(case, &a, &b);
        variant_count += targets.len();
        for (variant, call) in &targets {
            for (n, who) in CROSS_PRINCIPALS.iter().enumerate() {
                let credential = credential(&env, &a, *who);
                // Each principal calls from an address of its own (harden believes loopback's and
                // the Proxy's X-Forwarded-For), so sign-in throttling sees separate clients.
                let address = format!("203.0.113.{}", n + 1);
                for (listener, base) in listeners(&env, case) {
                    let context = format!("A's {who:?} → {} [{}] on the {listener}", case.route, variant.describe());
                    let before = last_event(&env).await;
                    match send(&env, base, *surface, &credential, Some(&address), case.route, call).await {
                        Ok(exchange) => {
                            calls += 1;
                            seen.entry(case.route).or_default().insert(exchange.status.as_u16());
                            let appended = events_after(&env, before).await;
                            let refusal = refusal_expected(case.reach, *surface, &credential);
                            for problem in crossings(case, *variant, refusal, &exchange, &appended, &b) {
                                failures.push(format!("{context}: {problem}"));
                            }
                        }
                        Err(e) => failures.push(format!("{context}: {e}")),
                    }
                }
            }
        }
    }

    let crossed = started.elapsed() - built;

    // The positive control: org B's own principals, with B's ids, succeed.
    let mut controls = plan.clone();
    controls.sort_by_key(|(case, _)| case.phase.rank(false));
    let mut succeeded = 0;
    for (case, surface) in &controls {
        let call = (case.fill)(&Target { outer: &b, inner: &b, cross: false });
        let base = if case.doc == Doc::Proxy { &env.app.proxy } else { &env.app.backend };
        let context = format!("positive control: B's {:?} → {}", case.by, case.route);
        match send(&env, base, *surface, &credential(&env, &b, case.by), None, case.route, &call).await {
            Ok(exchange) if !exchange.status.is_success() => {
                failures.push(format!("{context}: expected 2xx, got {}", exchange.describe()))
            }
            Ok(exchange) => {
                succeeded += 1;
                // (The global admin sees every org.)
                let leaked = if case.by == Who::GlobalAdmin { vec![] } else { exchange.leaked(&a.markers) };
                if !leaked.is_empty() {
                    failures.push(format!("{context}: the answer holds A's {leaked:?}: {}", exchange.describe()));
                }
            }
            Err(e) => failures.push(format!("{context}: {e}")),
        }
    }

    println!("what org A's principals were answered, per operation:");
    for (route, statuses) in &seen {
        println!("  {route}: {statuses:?}");
    }
    let count = |f: &dyn Fn(&Case) -> bool| plan.iter().filter(|(c, _)| f(c)).count();
    println!(
        "isolation matrix: {} operations ({} Backend incl. {} Cloud, {} Proxy; {} tenant, {} own, {} global, {} public) \
         × {} principals of org A = {} pairs; {variant_count} id variants; {calls} cross-tenant calls; \
         {succeeded} of {} positive controls by org B succeeded; fixtures {:.1} s, cross calls {:.1} s, total {:.1} s",
        plan.len(),
        count(&|c| c.doc == Doc::Backend),
        count(&|c| c.route.contains(" /cloud/")),
        count(&|c| c.doc == Doc::Proxy),
        count(&|c| c.reach == Reach::Tenant),
        count(&|c| c.reach == Reach::Own),
        count(&|c| c.reach == Reach::Global),
        count(&|c| c.reach == Reach::Public),
        CROSS_PRINCIPALS.len(),
        plan.len() * CROSS_PRINCIPALS.len(),
        plan.len(),
        built.as_secs_f64(),
        crossed.as_secs_f64(),
        started.elapsed().as_secs_f64(),
    );
    assert!(failures.is_empty(), "{} isolation failures:\n{}", failures.len(), failures.join("\n"));
}
