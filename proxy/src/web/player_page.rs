//! The player page (`GET /sessions/{id}/play`): the screen, the timeline and the controls.
//! The page's script (`assets/player.js`) fetches frames, screens and the timeline from
//! [`super::playback`] and the terminal handlers in [`super::pages`].

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use policy::Protocol;

use super::WebState;
use super::auth::Caller;
use super::html::escape;
use super::i18n::tr;
use super::pages::{is_terminal, not_found, page, visible_session};

/// `GET /sessions/{id}/play[?t=SECONDS]`: the player page: a rendered terminal, or a canvas
/// for RDP and VNC; a timeline with policy-event markers, speed, skip idle, and (terminals)
/// search. `player.js` does the rest through `/screen`, `/frame`, `/timeline`, `/search`.
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
        let msg = tr(lang, "player.no_recording");
        return page(&caller, tr(lang, "player.title"), &format!("<p>{msg}</p>")).into_response();
    }
    let terminal = is_terminal(row.protocol);
    let view = if terminal {
        "<pre id=\"screen\" class=\"terminal\"></pre>".to_owned()
    } else {
        "<div class=\"canvas-box\"><canvas id=\"canvas\" width=\"0\" height=\"0\"></canvas></div>"
            .to_owned()
    };
    let mut speeds = String::new();
    for s in ["0.5", "1", "2", "4", "8", "16"] {
        let _ = write!(
            speeds,
            "<button data-speed=\"{s}\" id=\"speed-{}\">{s}×</button>",
            s.replace('.', "_")
        );
    }
    // Graphical sessions are searched in their typed-text index, by those who may see it.
    let typed = !terminal && caller.may_search_typed_text();
    let search = if terminal || typed {
        format!(
            "<form id=\"search-form\" class=\"search\"><input id=\"search\" type=\"search\" \
             maxlength=\"{max}\" placeholder=\"{ph}\"><button id=\"search-go\">{go}</button>\
             <span id=\"search-count\"></span></form><ol id=\"search-results\" class=\"hits\"></ol>",
            max = if terminal {
                player::terminal::MAX_QUERY_LEN
            } else {
                recorder::catalogue::MAX_TYPED_QUERY_CHARS
            },
            ph = tr(
                lang,
                if terminal {
                    "player.search_placeholder"
                } else {
                    "search.placeholder"
                }
            ),
            go = tr(lang, "player.search"),
        )
    } else {
        String::new()
    };
    // The RDP recording keeps the pointer's shape and position; drawing it is a choice, since
    // the server's own screen (and the fidelity checks) has none.
    let pointer = if row.protocol == Protocol::Rdp {
        format!(
            " <label><input type=\"checkbox\" id=\"show-pointer\"> {}</label>",
            tr(lang, "player.pointer")
        )
    } else {
        String::new()
    };
    let body = format!(
        "<h1>{title}: <a href=\"/sessions/{id}\">{id}</a></h1>\
         <div id=\"player\" data-session=\"{id}\" data-kind=\"{kind}\" \
         data-msg-undecodable=\"{undecodable}\" data-msg-nohits=\"{nohits}\" data-msg-idle=\"{idle_word}\">\
         <p id=\"player-message\" class=\"error\" hidden></p>{view}\
         <div class=\"seek\"><div id=\"markers\" class=\"markers\"></div>\
         <input id=\"slider\" type=\"range\" min=\"0\" max=\"0\" value=\"0\" step=\"100\"></div>\
         <div class=\"controls\"><span id=\"clock\"></span> \
         <button data-speed=\"0\" id=\"pause\" title=\"{pause}\">&#9646;&#9646;</button>{speeds}\
         <label><input type=\"checkbox\" id=\"skip-idle\" checked> {skip}</label>{pointer}</div>\
         {search}<h2>{events}</h2><ol id=\"marker-list\" class=\"timeline\"></ol></div>\
         <script src=\"/assets/player.js\"></script>",
        title = tr(lang, "player.title"),
        id = row.id,
        kind = if terminal { "terminal" } else { "graphical" },
        undecodable = escape(tr(lang, "player.undecodable")),
        nohits = escape(tr(lang, "player.no_hits")),
        idle_word = escape(tr(lang, "player.idle")),
        pause = tr(lang, "player.pause"),
        skip = tr(lang, "player.skip_idle"),
        events = tr(lang, "player.events"),
    );
    page(&caller, tr(lang, "player.title"), &body).into_response()
}
