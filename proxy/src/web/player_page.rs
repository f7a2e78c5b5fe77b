//! The player page (`GET /sessions/{id}/play`): the screen, the timeline and the controls.
//! The page's script (`assets/player.js`) fetches frames, screens and the timeline from
//! [`super::playback`] and the terminal handlers in [`super::pages`], and downloads through
//! [`super::export`].
//!
//! Built with `maud`, so every value is escaped; every string comes from
//! [`super::i18n`] (the script takes its strings from `data-*` attributes).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use policy::Protocol;
use recorder::catalogue::SessionRow;

use super::WebState;
use super::access::visible_session;
use super::auth::Caller;
use super::i18n::{Lang, tr};
use super::layout::{is_terminal, not_found, page};

/// The playback speeds offered (× real time); the ↑/↓ keys step through them.
pub const SPEEDS: [&str; 6] = ["0.5", "1", "2", "4", "8", "16"];

/// `GET /sessions/{id}/play[?t=SECONDS]`: the player page: a rendered terminal, or a canvas
/// for RDP and VNC; a timeline with wall-clock ticks, policy events, notes and search hits;
/// play/pause, speed, skip idle, fit to window, keyboard shortcuts, search and exports.
/// `player.js` does the rest through `/screen`, `/frame`, `/timeline`, `/search`, `/export`.
pub async fn play(
    State(state): State<Arc<WebState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    let lang = caller.lang;
    let row = match visible_session(&state, &caller, &id).await {
        Ok(Some(row)) => row,
        Ok(None) => return not_found(&caller),
        Err(resp) => return resp,
    };
    if row.recording.is_none() {
        let body = html! { p { (tr(lang, "player.no_recording")) } };
        return page(&caller, tr(lang, "player.title"), &body.into_string()).into_response();
    }
    if is_terminal(row.protocol) {
        // Decode while the browser loads the page and its script: its first `/screen` then
        // finds the replay cached (the time to first frame is benched).
        let state = Arc::clone(&state);
        let row = row.clone();
        tokio::spawn(async move {
            let _ = super::access::replay_of(&state, &row).await;
        });
    }
    let timezone = state.services.inventory().timezone();
    let body = player(&caller, &row, timezone.name());
    page(&caller, tr(lang, "player.title"), &body.into_string()).into_response()
}

/// What the page shows of one session to `caller`, with wall-clock times in `timezone` (an
/// IANA name, which the browser's `Intl` understands).
fn player(caller: &Caller, row: &SessionRow, timezone: &str) -> Markup {
    let lang = caller.lang;
    let t = |key| tr(lang, key);
    let terminal = is_terminal(row.protocol);
    let id = row.id.to_string();
    html! {
        h1 .player-title { (t("player.title")) ": " a href={ "/sessions/" (id) } { (id) } }
        div #player data-session=(id) data-kind=(if terminal { "terminal" } else { "graphical" })
            data-start-ms=(row.started_at.timestamp_millis()) data-tz=(timezone)
            data-lang=(lang.code())
            data-msg-undecodable=(t("player.undecodable")) data-msg-nohits=(t("player.no_hits"))
            data-msg-idle=(t("player.idle")) data-msg-play=(t("player.play"))
            data-msg-pause=(t("player.pause")) data-msg-fit=(t("player.fit"))
            data-msg-actual=(t("player.actual_size"))
            data-msg-policy=(t("player.kind_policy")) data-msg-note=(t("player.kind_note"))
            data-msg-hit=(t("player.legend_hit"))
            data-msg-source-output=(t("player.source_output"))
            data-msg-source-input=(t("player.source_input"))
            data-msg-source-typed=(t("player.source_typed"))
            data-msg-export-busy=(t("player.export_busy"))
            data-msg-export-failed=(t("player.export_failed")) {
            p #player-message .error role="alert" hidden {}
            div #stage .stage .fit {
                @if terminal {
                    pre #screen .terminal tabindex="0" aria-label=(t("player.title")) {}
                } @else {
                    div .canvas-box {
                        canvas #canvas width="0" height="0" aria-label=(t("player.title")) {}
                    }
                }
            }
            div #seek .seek {
                div #markers .markers role="group" aria-label=(t("player.timeline")) {}
                input #slider type="range" min="0" max="0" value="0" step="100"
                    aria-label=(t("player.seek"));
                div #ticks .ticks aria-hidden="true" {}
            }
            (controls(caller, row))
            (legend(lang))
            (help(lang))
            (search(caller, terminal))
            (exports(caller, row, terminal))
            h2 { (t("player.events")) }
            ol #marker-list .timeline {}
        }
        script src="/assets/player.js" {}
    }
}

/// Play/pause, the clocks, speeds, skip idle, the pointer (RDP), fit, full screen and help.
fn controls(caller: &Caller, row: &SessionRow) -> Markup {
    let lang = caller.lang;
    let t = |key| tr(lang, key);
    html! {
        div #controls .controls {
            // One toggle: the script swaps its label between "Play" and "Pause".
            button #pause type="button" .play-pause data-playing="0"
                title={ (t("player.play")) " (" (t("player.key_space")) ")" } {
                span .icon aria-hidden="true" { "▶" } " " span .label { (t("player.play")) }
            }
            span .clocks {
                span #clock title=(t("player.elapsed")) aria-label=(t("player.elapsed")) {}
                " "
                span #wallclock title=(t("player.wallclock")) aria-label=(t("player.wallclock")) {}
                " "
                span #timezone .tz {}
            }
            span .speeds role="group" aria-label=(t("player.speed")) {
                @for s in SPEEDS {
                    button type="button" data-speed=(s) id={ "speed-" (s.replace('.', "_")) }
                        aria-label={ (t("player.speed")) " " (s) "×" } { (s) "×" }
                }
            }
            label { input #skip-idle type="checkbox" checked; " " (t("player.skip_idle")) }
            // The RDP recording keeps the pointer's shape and position; drawing it is a
            // choice, since the server's own screen (and the fidelity checks) has none.
            @if row.protocol == Protocol::Rdp {
                label { input #show-pointer type="checkbox"; " " (t("player.pointer")) }
            }
            // Its label says what a press does ("actual size" while fitted, and back).
            button #fit-toggle type="button"
                title=(t("player.actual_size")) { (t("player.actual_size")) }
            button #fullscreen type="button" title={ (t("player.fullscreen")) " (f)" } {
                (t("player.fullscreen"))
            }
            button #help-button type="button" aria-expanded="false" aria-controls="help"
                aria-label=(t("player.help")) title={ (t("player.help")) " (?)" } { "?" }
        }
    }
}

/// What the marks on the timeline mean: shape and colour together, never colour alone.
fn legend(lang: Lang) -> Markup {
    let t = |key| tr(lang, key);
    html! {
        ul #legend .legend aria-label=(t("player.legend")) {
            li { span .swatch .event-policy aria-hidden="true" {} " " (t("player.legend_policy")) }
            li { span .swatch .event-note aria-hidden="true" {} " " (t("player.legend_note")) }
            li { span .swatch .hitmark aria-hidden="true" {} " " (t("player.legend_hit")) }
            li { span .swatch .idle aria-hidden="true" {} " " (t("player.legend_idle")) }
        }
    }
}

/// The keyboard help, opened by "?" (the key or the button).
fn help(lang: Lang) -> Markup {
    let t = |key| tr(lang, key);
    let keys: [(&str, &str); 7] = [
        (t("player.key_space"), t("player.key_play")),
        ("← →", t("player.key_arrows_lr")),
        ("↑ ↓", t("player.key_arrows_ud")),
        ("0–9", t("player.key_digits")),
        ("f", t("player.key_fullscreen")),
        ("?", t("player.key_help")),
        (t("player.key_escape"), t("player.key_close")),
    ];
    html! {
        section #help .help role="dialog" aria-labelledby="help-title" hidden {
            h2 #help-title { (t("player.help")) }
            dl {
                @for (key, what) in keys {
                    dt { kbd { (key) } }
                    dd { (what) }
                }
            }
            p { (t("player.key_note")) }
            button #help-close type="button" { (t("player.help_close")) }
        }
    }
}

/// The search form: terminal text and typed keys; graphical sessions are searched in their
/// typed-text index, by those who may see it.
fn search(caller: &Caller, terminal: bool) -> Markup {
    let lang = caller.lang;
    let t = |key| tr(lang, key);
    if !terminal && !caller.may_search_typed_text() {
        return html! {};
    }
    let max = if terminal {
        player::terminal::MAX_QUERY_LEN
    } else {
        recorder::catalogue::MAX_TYPED_QUERY_CHARS
    };
    let placeholder = t(if terminal {
        "player.search_placeholder"
    } else {
        "search.placeholder"
    });
    html! {
        form #search-form .search role="search" {
            input #search type="search" maxlength=(max) placeholder=(placeholder)
                aria-label=(t("player.search_label"));
            button #search-go { (t("player.search")) }
            " "
            span #search-count aria-live="polite" {}
        }
        ol #search-results .hits aria-label=(t("player.search_hits")) {}
    }
}

/// The downloads: what `sekisho export` makes, for this kind of session, and the evidence
/// bundle for the roles that may take one (see `bundle.rs`: those who see every session, of
/// an ended session).
fn exports(caller: &Caller, row: &SessionRow, terminal: bool) -> Markup {
    let lang = caller.lang;
    let t = |key| tr(lang, key);
    let base = format!("/sessions/{}", row.id);
    let bundle = caller.sees_all_sessions() && row.ended_at.is_some();
    html! {
        div #exports .exports role="group" aria-labelledby="exports-title" {
            h2 #exports-title { (t("player.export")) }
            @if terminal {
                a #export-txt .button href={ (base) "/export/txt" } download { (t("player.export_txt")) }
                a #export-asciicast .button href={ (base) "/export/asciicast" } download {
                    (t("player.export_asciicast"))
                }
            } @else {
                a #export-png .button href={ (base) "/export/png?t=0" } download { (t("player.export_png")) }
                a #export-mp4 .button href={ (base) "/export/mp4" } download { (t("player.export_mp4")) }
            }
            @if bundle {
                a #export-bundle .button href={ (base) "/bundle" } download { (t("player.export_bundle")) }
            }
            " "
            span #export-status aria-live="polite" {}
        }
    }
}
