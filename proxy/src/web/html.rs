//! The HTML every page shares: escaping and the page shell (head, header, language switch).

use axum::response::Html;

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

pub(super) fn shell(lang: Lang, title: &str, nav: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!DOCTYPE html><html lang=\"{code}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{title} - {app}</title><link rel=\"stylesheet\" href=\"/assets/style.css\"></head>\
         <body><header><span class=\"brand\">{app}</span>{nav}\
         <a class=\"lang\" id=\"lang-switch\" href=\"/lang/{other}\">{switch}</a></header>\
         <main>{body}</main></body></html>",
        code = lang.code(),
        title = escape(title),
        app = tr(lang, "app.name"),
        other = lang.other().code(),
        switch = tr(lang, "lang.switch"),
    ))
}

/// A page without a logged-in caller (login).
pub fn page_without_caller(lang: Lang, title: &str, body: &str) -> Html<String> {
    shell(lang, title, "", body)
}
