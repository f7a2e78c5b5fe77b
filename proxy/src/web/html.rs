//! The HTML every page shares: escaping and the page shell (head, header, language switch).

use axum::response::Html;
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::i18n::{Lang, tr};

/// HTML-escapes text.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page shell every page shares: head (one stylesheet, the favicon), the header with the
/// navigation `nav` and the language switch, and `body` (already rendered, escaped markup).
pub(super) fn shell(lang: Lang, title: &str, nav: Markup, body: &str) -> Html<String> {
    let app = tr(lang, "app.name");
    let markup = html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " - " (app) }
                link rel="stylesheet" href="/assets/style.css";
                link rel="icon" type="image/svg+xml" href="/assets/favicon.svg";
            }
            body {
                a.skip href="#main" { (tr(lang, "nav.skip")) }
                header {
                    span.brand { img src="/assets/favicon.svg" alt="" width="24" height="24"; " " (app) }
                    (nav)
                    a.lang id="lang-switch" href={ "/lang/" (lang.other().code()) }
                        lang=(lang.other().code()) { (tr(lang, "lang.switch")) }
                }
                main id="main" { (PreEscaped(body)) }
            }
        }
    };
    Html(markup.into_string())
}

/// A page without a logged-in caller (login).
pub fn page_without_caller(lang: Lang, title: &str, body: &str) -> Html<String> {
    shell(lang, title, html! {}, body)
}
