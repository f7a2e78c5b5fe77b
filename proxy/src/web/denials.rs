//! The denials dashboard (`GET /denials`, security and admin): what was refused in a period,
//! narrowed by rule, severity, user, contractor, target, source address and door; counted by
//! rule (against the previous period of the same length), user, door and day; listed most
//! serious first with links to each denial's session or to the decision itself; and the
//! policy events of the period, each with its review (see [`super::reviews`]).
//!
//! Failed logins are `auth.failed` denials written by every door (web, SSH, RDP, VNC), so
//! they are listed, counted by door and filtered here like any other denial. A filter that
//! does not parse is answered with the form and a message in the page's language (HTTP 400),
//! never a parser's error.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Days, Utc};
use maud::{Markup, html};
use policy::config::Role;
use policy::{Protocol, Rule, Severity};
use recorder::catalogue::{DenialFilter, DenialRow, PolicyEventRow, ReviewRow, ReviewSubject};
use serde::Deserialize;

use super::WebState;
use super::auth::Caller;
use super::filters::{self, day_start, nonempty};
use super::i18n::{Lang, labels, tr, trf};
use super::layout::{catalogue_failed, fmt_time, not_found, page, urlenc};
use super::session_list::MAX_FILTER_LEN;

/// Denials read for the dashboard at most (the catalogue's page cap). The counts by rule do
/// not depend on it: the catalogue counts them.
pub const MAX_DASHBOARD_DENIALS: u32 = recorder::catalogue::MAX_PAGE;
/// Denials listed one by one on the dashboard (the most serious first): a longer table is
/// not read, and the filters narrow it.
pub const DENIALS_LISTED: usize = 200;
/// Longest a dashboard period may be, in days.
pub const MAX_DASHBOARD_DAYS: i64 = 366;
/// The period when none is given, in days.
pub const DEFAULT_DAYS: i64 = 30;

/// The dashboard's filters as the form sends them (all optional; empty means any). Every
/// field is text, so a value that does not parse reaches [`DenialQuery::filter`] and gets a
/// message in the page's language instead of the extractor's.
#[derive(Debug, Default, Deserialize)]
pub struct DenialQuery {
    days: Option<String>,
    from: Option<String>,
    to: Option<String>,
    rule: Option<String>,
    severity: Option<String>,
    user: Option<String>,
    contractor: Option<String>,
    target: Option<String>,
    source: Option<String>,
    protocol: Option<String>,
    unreviewed: Option<String>,
}

/// Why a filter was refused: the message the reader gets, in their language.
struct FilterError(String);

/// A period `[since, until)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// Its start (inclusive).
    pub since: DateTime<Utc>,
    /// Its end (exclusive).
    pub until: DateTime<Utc>,
}

impl Period {
    /// The period of the same length that ends where this one starts.
    pub fn previous(&self) -> Period {
        Period {
            since: self.since - (self.until - self.since),
            until: self.since,
        }
    }

    fn contains(&self, t: DateTime<Utc>) -> bool {
        self.since <= t && t < self.until
    }
}

/// What the dashboard shows: the catalogue filter (without its period) and the period.
struct Selection {
    filter: DenialFilter,
    period: Period,
}

/// A day in the configured time zone, as the form writes it.
fn local_day(state: &WebState, t: DateTime<Utc>) -> String {
    t.with_timezone(&state.services.inventory().timezone())
        .format("%Y-%m-%d")
        .to_string()
}

/// The rules that deny, in the order of interfaces.md.
fn deny_rules() -> impl Iterator<Item = Rule> {
    Rule::ALL.into_iter().filter(|r| !r.is_allow())
}

/// The severity of a stored rule id. A rule this build does not know (written by a newer
/// instance sharing the catalogue) counts as high, so someone looks at it rather than
/// nobody.
pub fn severity_of(rule: &str) -> Severity {
    rule.parse::<Rule>().map_or(Severity::High, Rule::severity)
}

/// The strings key of a rule's name.
fn rule_key(r: Rule) -> &'static str {
    match r {
        Rule::SourceUnknown => "rule.source.unknown",
        Rule::SourceDesktopMismatch => "rule.source.desktop-mismatch",
        Rule::TargetUnknown => "rule.target.unknown",
        Rule::UserUnknown => "rule.user.unknown",
        Rule::ZonePath => "rule.zone.path",
        Rule::ContractNone => "rule.contract.none",
        Rule::ContractExpired => "rule.contract.expired",
        Rule::ContractWindow => "rule.contract.window",
        Rule::RdpVdiToVm => "rule.rdp.vdi-to-vm",
        Rule::RdpHopNoConsole => "rule.rdp.hop-no-console",
        Rule::ConsolePhysical => "rule.console.physical",
        Rule::ConsoleUnavailable => "rule.console.unavailable",
        Rule::SshVdiToVm => "rule.ssh.vdi-to-vm",
        Rule::SshForwarding => "rule.ssh.forwarding",
        Rule::SshFileTransfer => "rule.ssh.file-transfer",
        Rule::SekishoUnavailable => "rule.sekisho.unavailable",
        Rule::CredentialMissing => "rule.credential.missing",
        Rule::CredentialRefused => "rule.credential.refused",
        Rule::RdpServerCertChanged => "rule.rdp.server-cert-changed",
        Rule::ConsoleHostKeyChanged => "rule.console.host-key-changed",
        Rule::VncTicketInvalid => "rule.vnc.ticket-invalid",
        Rule::AuthFailed => "rule.auth.failed",
        Rule::TargetChanged => "rule.target.changed",
        Rule::AuthSecondFactor => "rule.auth.second-factor",
        Rule::SupervisionAbsent => "rule.supervision.absent",
        Rule::RdpPhysical => "rule.rdp.physical",
        Rule::RdpHopFromConsole => "rule.rdp.hop-from-console",
        Rule::ConsoleVm => "rule.console.vm",
        Rule::SshPhysical => "rule.ssh.physical",
        _ => "rule.other",
    }
}

/// A stored rule id's human name in `lang`.
pub fn rule_name(lang: Lang, rule: &str) -> &'static str {
    tr(lang, rule.parse::<Rule>().map_or("rule.other", rule_key))
}

/// A severity's name in `lang`.
pub fn severity_name(lang: Lang, s: Severity) -> &'static str {
    tr(
        lang,
        match s {
            Severity::Critical => "severity.critical",
            Severity::High => "severity.high",
            Severity::Medium => "severity.medium",
            Severity::Low => "severity.low",
        },
    )
}

/// The change from `prev` to `n`, signed: `+8`, `-3`, `±0`.
pub fn change(n: u64, prev: u64) -> String {
    let d = i128::from(n) - i128::from(prev);
    match d {
        0 => "±0".to_owned(),
        d if d > 0 => format!("+{d}"),
        d => format!("{d}"),
    }
}

impl DenialQuery {
    /// The period in days, within the dashboard's bounds (default 30). Lenient, for the
    /// review forms and the CSV; the dashboard itself refuses a bad value with a message.
    pub fn days(&self) -> i64 {
        nonempty(&self.days)
            .and_then(|d| d.parse::<i64>().ok())
            .unwrap_or(DEFAULT_DAYS)
            .clamp(1, MAX_DASHBOARD_DAYS)
    }

    fn unreviewed_only(&self) -> bool {
        self.unreviewed
            .as_deref()
            .is_some_and(|v| !v.is_empty() && v != "0")
    }

    /// The period: `from`..`to` (whole days in the configured time zone, `to` inclusive)
    /// when either is given, the missing end taken `days` from the other (or now); else the
    /// last `days` days up to `now`.
    fn period(
        &self,
        state: &WebState,
        lang: Lang,
        now: DateTime<Utc>,
    ) -> Result<Period, FilterError> {
        let max = MAX_DASHBOARD_DAYS.to_string();
        let bad_days = || FilterError(trf(lang, "denials.bad_days", &[("max", &max)]));
        let days = match nonempty(&self.days) {
            None => DEFAULT_DAYS,
            Some(d) => d
                .parse::<i64>()
                .ok()
                .filter(|d| (1..=MAX_DASHBOARD_DAYS).contains(d))
                .ok_or_else(bad_days)?,
        };
        let length = chrono::Duration::days(days);
        let (from, to) = filters::days(state, lang, &self.from, &self.to).map_err(FilterError)?;
        let out_of_range = || FilterError(tr(lang, "filter.bad_date_range").to_owned());
        let until = match to {
            // Inclusive: up to the start of the next day.
            Some(d) => {
                day_start(state, d.succ_opt().ok_or_else(out_of_range)?).ok_or_else(out_of_range)?
            }
            None => match from {
                Some(f) => {
                    let end = f
                        .checked_add_days(Days::new(days.unsigned_abs()))
                        .ok_or_else(out_of_range)?;
                    day_start(state, end).ok_or_else(out_of_range)?.min(now)
                }
                None => now,
            },
        };
        let since = match from {
            Some(d) => day_start(state, d).ok_or_else(out_of_range)?,
            None => until.checked_sub_signed(length).ok_or_else(out_of_range)?,
        };
        if since >= until || until - since > chrono::Duration::days(MAX_DASHBOARD_DAYS) {
            return Err(bad_days());
        }
        Ok(Period { since, until })
    }

    /// The catalogue filter and period, or the message saying what is wrong.
    fn selection(&self, state: &WebState, lang: Lang) -> Result<Selection, FilterError> {
        let values = [
            &self.days,
            &self.from,
            &self.to,
            &self.rule,
            &self.severity,
            &self.user,
            &self.contractor,
            &self.target,
            &self.source,
            &self.protocol,
            &self.unreviewed,
        ];
        if values
            .iter()
            .any(|v| v.as_ref().is_some_and(|s| s.len() > MAX_FILTER_LEN))
        {
            let max = MAX_FILTER_LEN.to_string();
            return Err(FilterError(trf(lang, "filter.too_long", &[("max", &max)])));
        }
        let period = self.period(state, lang, Utc::now())?;
        let inventory = state.services.inventory();
        let mut f = DenialFilter::default();
        if let Some(r) = nonempty(&self.rule) {
            let rule = r
                .parse::<Rule>()
                .ok()
                .filter(|r| !r.is_allow())
                .ok_or_else(|| FilterError(trf(lang, "denials.bad_rule", &[("value", &r)])))?;
            f.rule = Some(rule.as_str().to_owned());
        }
        if let Some(s) = nonempty(&self.severity) {
            let severity = s
                .parse::<Severity>()
                .map_err(|_| FilterError(trf(lang, "denials.bad_severity", &[("value", &s)])))?;
            f.rules = Some(
                deny_rules()
                    .filter(|r| r.severity() == severity)
                    .map(|r| r.as_str().to_owned())
                    .collect(),
            );
        }
        // A name picked from the list (or typed whole) is matched exactly; anything else is
        // a prefix in any case, like the session list. Failed logins carry names typed at a
        // door, which need not be in the inventory: the prefix finds those too.
        if let Some(u) = nonempty(&self.user) {
            if inventory.users().iter().any(|x| x.name == u) {
                f.user = Some(u);
            } else {
                f.user_prefix = Some(u);
            }
        }
        if let Some(c) = nonempty(&self.contractor) {
            if inventory.contractors().iter().any(|x| x.id == c) {
                f.contractor = Some(c);
            } else {
                f.contractor_prefix = Some(c);
            }
        }
        if let Some(t) = nonempty(&self.target) {
            if inventory.targets().iter().any(|x| x.name == t) {
                f.target = Some(t);
            } else {
                f.target_prefix = Some(t);
            }
        }
        if let Some(s) = nonempty(&self.source) {
            if let Ok(ip) = s.parse::<IpAddr>() {
                f.source = Some(ip);
            } else if s
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == '.' || c == ':')
            {
                f.source_prefix = Some(s.to_ascii_lowercase());
            } else {
                return Err(FilterError(trf(
                    lang,
                    "denials.bad_source",
                    &[("value", &s)],
                )));
            }
        }
        if let Some(p) = nonempty(&self.protocol) {
            f.protocol =
                Some(p.parse::<Protocol>().map_err(|_| {
                    FilterError(trf(lang, "filter.bad_protocol", &[("value", &p)]))
                })?);
        }
        Ok(Selection { filter: f, period })
    }

    /// The query string of these filters (empty values left out), for links back here.
    pub fn query_string(&self) -> String {
        let pairs = [
            ("days", nonempty(&self.days)),
            ("from", nonempty(&self.from)),
            ("to", nonempty(&self.to)),
            ("rule", nonempty(&self.rule)),
            ("severity", nonempty(&self.severity)),
            ("user", nonempty(&self.user)),
            ("contractor", nonempty(&self.contractor)),
            ("target", nonempty(&self.target)),
            ("source", nonempty(&self.source)),
            ("protocol", nonempty(&self.protocol)),
            ("unreviewed", nonempty(&self.unreviewed)),
        ];
        pairs
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", urlenc(v))))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// The period for the CSV: the dashboard's, or the last `days` when it does not parse
    /// (the CSV link is always made by the dashboard from a period that parsed).
    pub fn csv_period(&self, state: &WebState) -> Period {
        self.period(state, Lang::En, Utc::now())
            .unwrap_or_else(|_| {
                let until = Utc::now();
                Period {
                    since: until - chrono::Duration::days(self.days()),
                    until,
                }
            })
    }
}

/// A severity as a labelled badge: the word, not the colour alone.
fn severity_badge(lang: Lang, s: Severity) -> Markup {
    html! { span class={ "sev sev-" (s.as_str()) } { (severity_name(lang, s)) } }
}

/// A rule as its name, with its id beside it (as `sekisho denials list` shows it).
fn rule_cell(lang: Lang, rule: &str) -> Markup {
    html! {
        span.rule-name { (rule_name(lang, rule)) }
        " " code.rule-id { (rule) }
    }
}

/// The filter form, with pick-lists (datalists) of the inventory's names.
fn filter_form(state: &WebState, lang: Lang, q: &DenialQuery) -> Markup {
    let inventory = state.services.inventory();
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    let doors = [
        Protocol::Web,
        Protocol::Ssh,
        Protocol::Rdp,
        Protocol::ConsoleVnc,
        Protocol::ConsoleSerial,
    ];
    html! {
        form.filters id="denial-filters" method="get" action="/denials" role="search"
             aria-label=(tr(lang, "denials.filter_label")) {
            label for="f-rule" { (tr(lang, "field.rule")) }
            select id="f-rule" name="rule" {
                option value="" { (tr(lang, "denials.any_rule")) }
                @for r in deny_rules() {
                    option value=(r.as_str()) selected[q.rule.as_deref() == Some(r.as_str())] {
                        (tr(lang, rule_key(r)))
                    }
                }
            }
            label for="f-severity" { (tr(lang, "denials.severity")) }
            select id="f-severity" name="severity" {
                option value="" { (tr(lang, "severity.any")) }
                @for s in Severity::ALL {
                    option value=(s.as_str()) selected[q.severity.as_deref() == Some(s.as_str())] {
                        (severity_name(lang, s))
                    }
                }
            }
            label for="f-user" { (tr(lang, "field.user")) }
            input id="f-user" name="user" type="text" list="denial-users" autocomplete="off"
                  value=(value(&q.user));
            datalist id="denial-users" {
                @for u in inventory.users().iter().filter(|u| u.role == Role::Contractor) {
                    option value=(u.name) {}
                }
            }
            label for="f-contractor" { (tr(lang, "field.contractor")) }
            input id="f-contractor" name="contractor" type="text" list="denial-contractors"
                  autocomplete="off" value=(value(&q.contractor));
            datalist id="denial-contractors" {
                @for c in inventory.contractors() { option value=(c.id) { (c.name) } }
            }
            label for="f-target" { (tr(lang, "field.target")) }
            input id="f-target" name="target" type="text" list="denial-targets"
                  autocomplete="off" value=(value(&q.target));
            datalist id="denial-targets" {
                @for t in inventory.targets() { option value=(t.name) {} }
            }
            label for="f-source" { (tr(lang, "field.source")) }
            input id="f-source" name="source" type="text" autocomplete="off"
                  placeholder=(tr(lang, "denials.source_hint")) value=(value(&q.source));
            label for="f-protocol" { (tr(lang, "denials.door")) }
            select id="f-protocol" name="protocol" {
                option value="" { (tr(lang, "filter.any")) }
                @for p in doors {
                    option value=(p.as_str()) selected[q.protocol.as_deref() == Some(p.as_str())] {
                        (labels::protocol(lang, p))
                    }
                }
            }
            label for="f-days" { (tr(lang, "denials.days")) }
            input id="f-days" name="days" type="number" min="1" max=(MAX_DASHBOARD_DAYS)
                  value=(nonempty(&q.days).unwrap_or_else(|| DEFAULT_DAYS.to_string()));
            label for="f-from" { (tr(lang, "field.from")) }
            input id="f-from" name="from" type="date" value=(value(&q.from));
            label for="f-to" { (tr(lang, "field.to")) }
            input id="f-to" name="to" type="date" value=(value(&q.to));
            span {
                input id="f-unreviewed" type="checkbox" name="unreviewed" value="1"
                      checked[q.unreviewed_only()];
                label for="f-unreviewed" { (tr(lang, "review.unreviewed_only")) }
            }
            button id="apply" type="submit" { (tr(lang, "filter.apply")) }
            a id="clear" href="/denials" { (tr(lang, "filter.clear")) }
        }
    }
}

/// A count table: one row per (label, count), with a bar.
fn counts_table(
    lang: Lang,
    id: &str,
    title: &'static str,
    head: &'static str,
    items: &[(Markup, u64)],
) -> Markup {
    let max = items.iter().map(|(_, n)| *n).max().unwrap_or(1).max(1);
    html! {
        section {
            h2 id={ (id) "-title" } { (tr(lang, title)) }
            div.table-wrap {
                table id=(id) aria-labelledby={ (id) "-title" } {
                    thead { tr {
                        th scope="col" { (tr(lang, head)) }
                        th scope="col" { (tr(lang, "field.count")) }
                        th scope="col" { span.visually-hidden { (tr(lang, "field.count")) } }
                    } }
                    tbody {
                        @for (label, n) in items {
                            tr {
                                th scope="row" { (label) }
                                td.num { (n) }
                                td { span.bar style={ "width:" (n * 200 / max) "px" } {} }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One line of the table by rule.
struct RuleCount {
    rule: String,
    severity: Severity,
    n: u64,
    prev: u64,
}

/// The table by rule: severity first, then count, with the previous period and the change.
fn by_rule_table(lang: Lang, items: &[RuleCount]) -> Markup {
    let max = items.iter().map(|c| c.n).max().unwrap_or(1).max(1);
    html! {
        section {
            h2 id="by-rule-title" { (tr(lang, "denials.by_rule")) }
            div.table-wrap {
                table id="by-rule" aria-labelledby="by-rule-title" {
                    thead { tr {
                        th scope="col" { (tr(lang, "field.rule")) }
                        th scope="col" { (tr(lang, "denials.severity")) }
                        th scope="col" { (tr(lang, "field.count")) }
                        th scope="col" { (tr(lang, "denials.previous")) }
                        th scope="col" { (tr(lang, "denials.change")) }
                        th scope="col" { span.visually-hidden { (tr(lang, "field.count")) } }
                    } }
                    tbody {
                        @for c in items {
                            tr.rule-count data-rule=(c.rule) data-severity=(c.severity.as_str()) {
                                th scope="row" { (rule_cell(lang, &c.rule)) }
                                td { (severity_badge(lang, c.severity)) }
                                td.num.count-now { (c.n) }
                                td.num.count-prev { (c.prev) }
                                td.num.count-change { (change(c.n, c.prev)) }
                                td { span.bar style={ "width:" (c.n * 200 / max) "px" } {} }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Counts of `keys`, most first, then by key.
fn tally<'a>(keys: impl Iterator<Item = &'a str>) -> Vec<(&'a str, u64)> {
    let mut m: BTreeMap<&str, u64> = BTreeMap::new();
    for k in keys {
        *m.entry(k).or_default() += 1;
    }
    let mut v: Vec<(&str, u64)> = m.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    v
}

/// The name of a rule or of a policy event kind (the unreviewed counts mix both).
fn subject_name(lang: Lang, key: &str) -> Markup {
    if key.parse::<Rule>().is_ok() {
        rule_cell(lang, key)
    } else {
        html! { (super::playback::marker_label(lang, key)) " " code.rule-id { (key) } }
    }
}

/// The list of denials, most serious first.
fn denial_table(
    state: &WebState,
    caller: &Caller,
    rows: &[&DenialRow],
    reviews: &HashMap<ReviewSubject, ReviewRow>,
    back: &str,
) -> Markup {
    let lang = caller.lang;
    html! {
        div.table-wrap {
            table id="denials" aria-labelledby="denials-title" {
                thead { tr {
                    th scope="col" { (tr(lang, "denials.severity")) }
                    th scope="col" { (tr(lang, "field.time")) }
                    th scope="col" { (tr(lang, "field.rule")) }
                    th scope="col" { (tr(lang, "field.user")) }
                    th scope="col" { (tr(lang, "field.contractor")) }
                    th scope="col" { (tr(lang, "field.target")) }
                    th scope="col" { (tr(lang, "field.source")) }
                    th scope="col" { (tr(lang, "denials.door")) }
                    th scope="col" { (tr(lang, "field.reason")) }
                    th scope="col" { (tr(lang, "review.title")) }
                } }
                tbody {
                    @for r in rows {
                        @let severity = severity_of(&r.rule);
                        @let reason = super::i18n::reasons::denial_reason(lang, r);
                        // A reason still in its stored English (a decision without a template)
                        // says so, for screen readers and for the page's language check.
                        @let reason_lang = (lang != Lang::En && reason == r.reason).then_some("en");
                        tr.denial-row id={ "d-" (r.id) } data-rule=(r.rule)
                           data-severity=(severity.as_str()) data-protocol=(r.protocol.as_str()) {
                            td { (severity_badge(lang, severity)) }
                            td {
                                @if let Some(s) = r.session_id {
                                    a.session-link href={ "/sessions/" (s) }
                                      title=(tr(lang, "denials.open_session")) {
                                        time datetime=(r.started_at.to_rfc3339()) { (fmt_time(state, r.started_at)) }
                                    }
                                } @else {
                                    a.decision-link href={ "#d-" (r.id) }
                                      title=(tr(lang, "denials.this_decision")) {
                                        time datetime=(r.started_at.to_rfc3339()) { (fmt_time(state, r.started_at)) }
                                    }
                                }
                            }
                            td { (rule_cell(lang, &r.rule)) }
                            td.user { (r.user.as_deref().unwrap_or("")) }
                            td.contractor { (r.contractor.as_deref().unwrap_or("")) }
                            td.target { (r.target.as_deref().unwrap_or("")) }
                            td.source { (r.source) }
                            td.door { (labels::protocol(lang, r.protocol)) }
                            td.reason lang=[reason_lang] { (reason) }
                            td { (super::reviews::review_cell(
                                caller,
                                ReviewSubject::Denial(r.id),
                                reviews.get(&ReviewSubject::Denial(r.id)),
                                back,
                            )) }
                        }
                    }
                }
            }
        }
    }
}

/// The answer to a filter that does not parse: the form and the message, HTTP 400.
fn filter_error(state: &WebState, caller: &Caller, q: &DenialQuery, message: &str) -> Response {
    let lang = caller.lang;
    let title = tr(lang, "denials.title");
    let body = html! {
        h1 { (title) }
        (filter_form(state, lang, q))
        p.error id="filter-error" role="alert" { (message) }
    };
    (
        StatusCode::BAD_REQUEST,
        page(caller, title, &body.into_string()),
    )
        .into_response()
}

/// `GET /denials` (security, admin): the dashboard.
pub async fn denials(
    State(state): State<Arc<WebState>>,
    caller: Caller,
    Query(q): Query<DenialQuery>,
) -> Response {
    if !caller.is_security() {
        return not_found(&caller);
    }
    let lang = caller.lang;
    let Selection { filter, period } = match q.selection(&state, lang) {
        Ok(s) => s,
        Err(FilterError(message)) => return filter_error(&state, &caller, &q, &message),
    };
    let previous = period.previous();
    let in_period = |p: Period| DenialFilter {
        since: Some(p.since),
        until: Some(p.until),
        ..filter.clone()
    };
    let catalogue = state.services.catalogue();
    let (counts, prev_counts, rows, reviews, events) = match (
        catalogue.count_denials_by_rule(&in_period(period)).await,
        catalogue.count_denials_by_rule(&in_period(previous)).await,
        catalogue
            .list_denials(&DenialFilter {
                limit: Some(MAX_DASHBOARD_DENIALS),
                ..in_period(period)
            })
            .await,
        catalogue.latest_reviews(period.since).await,
        catalogue
            .policy_events(period.since, MAX_DASHBOARD_DENIALS)
            .await,
    ) {
        (Ok(a), Ok(b), Ok(c), Ok(d), Ok(e)) => (a, b, c, d, e),
        (Err(e), ..)
        | (_, Err(e), ..)
        | (_, _, Err(e), ..)
        | (_, _, _, Err(e), _)
        | (.., Err(e)) => return catalogue_failed(&state, &caller, &e),
    };
    // Policy events belong to the period only (they have no rule, severity or door filter).
    let events: Vec<&PolicyEventRow> = events.iter().filter(|e| period.contains(e.at)).collect();
    let denial_reviewed = |r: &DenialRow| reviews.contains_key(&ReviewSubject::Denial(r.id));
    let event_reviewed =
        |e: &PolicyEventRow| reviews.contains_key(&ReviewSubject::PolicyEvent(e.id));

    // By rule: every rule seen now or in the previous period, severity first, then count.
    let mut by_rule: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (rule, n) in &counts {
        by_rule.entry(rule).or_default().0 = *n;
    }
    for (rule, n) in &prev_counts {
        by_rule.entry(rule).or_default().1 = *n;
    }
    let mut rule_counts: Vec<RuleCount> = by_rule
        .into_iter()
        .map(|(rule, (n, prev))| RuleCount {
            rule: rule.to_owned(),
            severity: severity_of(rule),
            n,
            prev,
        })
        .collect();
    rule_counts.sort_by(|a, b| {
        a.severity
            .cmp(&b.severity)
            .then_with(|| b.n.cmp(&a.n))
            .then_with(|| a.rule.cmp(&b.rule))
    });
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    let prev_total: u64 = prev_counts.iter().map(|(_, n)| n).sum();

    // What is still to review, denials and policy events alike.
    let unreviewed: Vec<(&str, &str, &str)> = rows
        .iter()
        .filter(|r| !denial_reviewed(r))
        .map(|r| {
            (
                r.rule.as_str(),
                r.user.as_deref().unwrap_or("-"),
                r.contractor.as_deref().unwrap_or("-"),
            )
        })
        .chain(
            events
                .iter()
                .filter(|e| !event_reviewed(e))
                .map(|e| (e.kind.as_str(), e.user.as_str(), e.contractor.as_str())),
        )
        .collect();
    let plain = |v: Vec<(&str, u64)>| -> Vec<(Markup, u64)> {
        v.into_iter().map(|(k, n)| (html! { (k) }, n)).collect()
    };
    let by_user = plain(tally(rows.iter().map(|r| r.user.as_deref().unwrap_or("-"))));
    let by_door: Vec<(Markup, u64)> = tally(rows.iter().map(|r| r.protocol.as_str()))
        .into_iter()
        .map(|(p, n)| {
            let label = p
                .parse::<Protocol>()
                .map_or(p, |p| labels::protocol(lang, p));
            (html! { (label) }, n)
        })
        .collect();
    let day_keys: Vec<String> = rows
        .iter()
        .map(|r| local_day(&state, r.started_at))
        .collect();
    let mut days = tally(day_keys.iter().map(String::as_str));
    // Days in calendar order, not by count.
    days.sort();
    let by_day = plain(days);
    let unreviewed_by_rule: Vec<(Markup, u64)> = tally(unreviewed.iter().map(|u| u.0))
        .into_iter()
        .map(|(k, n)| (subject_name(lang, k), n))
        .collect();
    let unreviewed_by_user = plain(tally(unreviewed.iter().map(|u| u.1)));
    let unreviewed_by_contractor = plain(tally(unreviewed.iter().map(|u| u.2)));

    // The list: most serious first, then newest first.
    let mut listed: Vec<&DenialRow> = rows
        .iter()
        .filter(|r| !q.unreviewed_only() || !denial_reviewed(r))
        .collect();
    listed.sort_by(|a, b| {
        severity_of(&a.rule)
            .cmp(&severity_of(&b.rule))
            .then_with(|| b.started_at.cmp(&a.started_at))
            .then_with(|| b.id.cmp(&a.id))
    });
    let matching = listed.len();
    listed.truncate(DENIALS_LISTED);
    let listed_events: Vec<&PolicyEventRow> = events
        .iter()
        .copied()
        .filter(|e| !q.unreviewed_only() || !event_reviewed(e))
        .take(DENIALS_LISTED)
        .collect();

    let back = q.query_string();
    let from_day = local_day(&state, period.since);
    // The period's last day: `until` is exclusive.
    let to_day = local_day(&state, period.until - chrono::Duration::microseconds(1));
    let period_text = if nonempty(&q.from).is_some() || nonempty(&q.to).is_some() {
        trf(
            lang,
            "denials.period_dates",
            &[("from", &from_day), ("to", &to_day)],
        )
    } else {
        let days = ((period.until - period.since).num_days()).to_string();
        trf(
            lang,
            "denials.period_days",
            &[("days", &days), ("from", &from_day), ("to", &to_day)],
        )
    };
    let csv_query = {
        let pairs = [
            ("days", nonempty(&q.days)),
            ("from", nonempty(&q.from)),
            ("to", nonempty(&q.to)),
        ];
        let mut s: Vec<String> = pairs
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", urlenc(v))))
            .collect();
        if s.is_empty() {
            s.push(format!("days={DEFAULT_DAYS}"));
        }
        s.join("&")
    };
    let title = tr(lang, "denials.title");
    let body = html! {
        h1 { (title) }
        (filter_form(&state, lang, &q))
        p id="period" { (tr(lang, "denials.period")) ": " (period_text) " "
            a id="denials-csv" href={ "/denials.csv?" (csv_query) } { (tr(lang, "review.csv")) } }
        p.count id="denial-total" aria-live="polite" data-now=(total) data-prev=(prev_total) {
            (trf(lang, "denials.total", &[
                ("n", &total.to_string()),
                ("prev", &prev_total.to_string()),
                ("change", &change(total, prev_total)),
            ]))
        }
        p id="unreviewed-count" { (tr(lang, "review.unreviewed")) ": " strong { (unreviewed.len()) } " / " (rows.len() + events.len()) }
        div.dashboard {
            (by_rule_table(lang, &rule_counts))
            (counts_table(lang, "by-door", "denials.by_door", "denials.door", &by_door))
            (counts_table(lang, "by-user", "denials.by_user", "field.user", &by_user))
            (counts_table(lang, "by-day", "denials.by_day", "field.day", &by_day))
            (counts_table(lang, "unreviewed-by-rule", "review.unreviewed_by_rule", "field.rule", &unreviewed_by_rule))
            (counts_table(lang, "unreviewed-by-user", "review.unreviewed_by_user", "field.user", &unreviewed_by_user))
            (counts_table(lang, "unreviewed-by-contractor", "review.unreviewed_by_contractor", "field.contractor", &unreviewed_by_contractor))
        }
        h2 id="denials-title" { (tr(lang, "denials.list")) }
        @if listed.is_empty() {
            p id="no-denials" { (tr(lang, "denials.none")) }
        } @else {
            p.muted id="denials-order" {
                @if matching > DENIALS_LISTED {
                    (trf(lang, "denials.listed", &[("shown", &DENIALS_LISTED.to_string()), ("n", &matching.to_string())]))
                } @else {
                    (tr(lang, "denials.sorted"))
                }
            }
            (denial_table(&state, &caller, &listed, &reviews, &back))
        }
        (super::reviews::policy_event_table(&state, &caller, &listed_events, &reviews, &back))
    };
    page(&caller, title, &body.into_string()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_signed() {
        assert_eq!(change(12, 4), "+8");
        assert_eq!(change(1, 4), "-3");
        assert_eq!(change(0, 0), "±0");
        assert_eq!(change(u64::MAX, 0), format!("+{}", u64::MAX));
    }

    #[test]
    fn the_previous_period_has_the_same_length_and_ends_where_this_starts() {
        let until = Utc::now();
        let p = Period {
            since: until - chrono::Duration::days(7),
            until,
        };
        let prev = p.previous();
        assert_eq!(prev.until, p.since);
        assert_eq!(prev.until - prev.since, p.until - p.since);
        assert!(p.contains(p.since) && !p.contains(p.until));
    }

    #[test]
    fn every_deny_rule_has_a_name_in_both_languages() {
        for r in deny_rules() {
            for lang in [Lang::En, Lang::Ja] {
                let name = tr(lang, rule_key(r));
                assert!(!name.starts_with("rule."), "{r} has no name in {lang:?}");
            }
            assert_ne!(tr(Lang::En, rule_key(r)), tr(Lang::Ja, rule_key(r)), "{r}");
        }
        for s in Severity::ALL {
            assert_ne!(severity_name(Lang::En, s), severity_name(Lang::Ja, s));
        }
        // A rule id this build does not know is named as such and sorts high.
        assert_eq!(
            rule_name(Lang::En, "rule.from.the.future"),
            tr(Lang::En, "rule.other")
        );
        assert_eq!(severity_of("rule.from.the.future"), Severity::High);
        assert_eq!(severity_of("zone.path"), Severity::Critical);
    }

    #[test]
    fn query_strings_keep_the_filters() {
        let q = DenialQuery {
            days: Some("7".into()),
            user: Some("tanaka".into()),
            source: Some("127.0.10.".into()),
            target: Some(" ".into()),
            ..DenialQuery::default()
        };
        assert_eq!(q.query_string(), "days=7&user=tanaka&source=127.0.10.");
        assert_eq!(q.days(), 7);
        let bad = DenialQuery {
            days: Some("seven".into()),
            ..DenialQuery::default()
        };
        assert_eq!(bad.days(), DEFAULT_DAYS);
    }
}
