//! The web UI's strings in Japanese and English. The language comes from the `lang` cookie
//! (the switch link sets it), else from `Accept-Language`, else Japanese (the users are
//! Japanese staff).

use axum::http::HeaderMap;

mod denials;
mod find;
pub mod labels;
mod player;
pub mod reasons;

/// A page language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// 日本語.
    Ja,
    /// English.
    En,
}

impl Lang {
    /// `ja` or `en`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Ja => "ja",
            Lang::En => "en",
        }
    }

    /// Parses `ja` / `en`.
    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "ja" => Some(Lang::Ja),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The other language (for the switch link).
    pub fn other(self) -> Lang {
        match self {
            Lang::Ja => Lang::En,
            Lang::En => Lang::Ja,
        }
    }

    /// The language of a request.
    pub fn of(headers: &HeaderMap) -> Lang {
        if let Some(l) = super::cookies::cookie(headers, "lang").and_then(|v| Lang::parse(&v)) {
            return l;
        }
        let accept = headers
            .get(axum::http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        // The first listed language we have wins (browsers list by preference).
        for part in accept.split(',') {
            let tag = part
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if tag == "ja" || tag.starts_with("ja-") {
                return Lang::Ja;
            }
            if tag == "en" || tag.starts_with("en-") {
                return Lang::En;
            }
        }
        Lang::Ja
    }
}

/// (key, English, Japanese).
const STRINGS: &[(&str, &str, &str)] = &[
    ("app.name", "Sekisho", "関所"),
    ("lang.switch", "日本語", "English"),
    ("nav.sessions", "Sessions", "セッション"),
    ("nav.denials", "Denials", "拒否"),
    ("nav.live", "Live sessions", "接続中のセッション"),
    ("nav.logout", "Log out", "ログアウト"),
    ("nav.label", "Main", "メインメニュー"),
    ("nav.skip", "Skip to the content", "本文へ移動"),
    ("title.separator", ", ", "、"),
    ("field.session", "Session", "セッション"),
    ("field.duration", "Duration", "時間"),
    ("filter.label", "Filter sessions", "セッションの絞り込み"),
    ("filter.clear", "Clear", "条件をクリア"),
    ("range.label", "Quick ranges:", "期間:"),
    ("range.today", "Today", "今日"),
    ("range.yesterday", "Yesterday", "昨日"),
    ("range.week", "Last 7 days", "過去7日間"),
    (
        "sessions.count",
        "{n} sessions match.",
        "該当するセッション: {n}件",
    ),
    ("sessions.paging", "Pages", "ページ"),
    ("sessions.play_label", "Play {title}", "{title} を再生"),
    (
        "filter.too_long",
        "A filter is longer than {max} characters.",
        "絞り込みの値が長すぎます({max}文字まで)。",
    ),
    (
        "filter.bad_protocol",
        "There is no protocol called \u{201c}{value}\u{201d}; pick one from the list.",
        "「{value}」というプロトコルはありません。一覧から選んでください。",
    ),
    (
        "filter.bad_outcome",
        "There is no outcome called \u{201c}{value}\u{201d}; pick one from the list.",
        "「{value}」という結果はありません。一覧から選んでください。",
    ),
    (
        "filter.bad_date",
        "\u{201c}{value}\u{201d} is not a date; write it like {example}.",
        "「{value}」は日付として読めません。{example} のように入力してください。",
    ),
    (
        "filter.bad_date_range",
        "That date is outside the range the catalogue can search.",
        "その日付は検索できる範囲の外です。",
    ),
    (
        "filter.bad_range",
        "The start date is after the end date.",
        "開始日が終了日より後になっています。",
    ),
    (
        "filter.bad_page",
        "This page link is damaged; start again from the first page.",
        "ページのリンクが壊れています。最初のページからやり直してください。",
    ),
    ("login.title", "Log in", "ログイン"),
    ("login.user", "User", "ユーザー"),
    ("login.password", "Password", "パスワード"),
    ("login.submit", "Log in", "ログイン"),
    (
        "login.failed",
        "Wrong user name or password.",
        "ユーザー名またはパスワードが違います。",
    ),
    (
        "login.limited",
        "Too many failed attempts; try again later.",
        "失敗が多すぎます。しばらくしてから再度お試しください。",
    ),
    ("card.title", "Matrix card", "マトリクスカード"),
    (
        "card.intro",
        "Enter the digit printed in each of these cells of your matrix card.",
        "マトリクスカードの次のセルに印刷された数字を入力してください。",
    ),
    ("card.cell", "Cell", "セル"),
    ("card.submit", "Confirm", "確認"),
    (
        "card.failed",
        "Wrong answer. Answer these new cells.",
        "回答が違います。新しいセルに回答してください。",
    ),
    (
        "card.locked",
        "Too many wrong matrix card answers; the card is locked for a while.",
        "マトリクスカードの回答の誤りが多すぎます。しばらくロックされます。",
    ),
    (
        "card.expired",
        "The login has expired; log in again.",
        "ログインの有効期限が切れました。もう一度ログインしてください。",
    ),
    (
        "error.csrf",
        "The form has expired; reload the page and try again.",
        "フォームの有効期限が切れました。ページを再読み込みしてください。",
    ),
    ("error.notfound", "Not found.", "見つかりません。"),
    (
        "error.catalogue",
        "The catalogue cannot be read right now.",
        "カタログを読み込めません。",
    ),
    (
        "error.bad_request",
        "Invalid request.",
        "不正なリクエストです。",
    ),
    ("sessions.title", "Sessions", "セッション一覧"),
    (
        "sessions.none",
        "No sessions match.",
        "該当するセッションはありません。",
    ),
    ("sessions.next", "Next page", "次のページ"),
    ("sessions.first", "First page", "最初のページ"),
    ("filter.apply", "Filter", "絞り込み"),
    ("filter.any", "any", "すべて"),
    ("field.id", "ID", "識別番号"),
    ("field.user", "User", "ユーザー"),
    ("field.contractor", "Contractor", "委託業者"),
    ("field.target", "Target", "接続先"),
    ("field.protocol", "Protocol", "プロトコル"),
    ("field.source", "Source", "接続元"),
    ("field.from", "From (date)", "開始日"),
    ("field.to", "To (date)", "終了日"),
    ("field.outcome", "Outcome", "結果"),
    ("field.started", "Started", "開始"),
    ("field.ended", "Ended", "終了"),
    ("field.path", "Access path", "接続経路"),
    ("field.recording", "Recording", "録画"),
    ("field.recording_state", "Recording state", "録画の状態"),
    ("field.verification", "Verification", "検証"),
    ("field.console", "Console session", "コンソールセッション"),
    ("field.rule", "Rule", "ルール"),
    ("field.reason", "Reason", "理由"),
    ("field.time", "Time", "時刻"),
    ("field.count", "Count", "件数"),
    ("field.day", "Day", "日付"),
    ("field.event", "Event", "イベント"),
    ("field.detail", "Detail", "詳細"),
    (
        "reason.unknown_rule",
        "Refused by a rule this version does not know.",
        "このバージョンが知らないルールにより拒否されました。",
    ),
    ("session.title", "Session", "セッション"),
    ("session.events", "Timeline", "タイムライン"),
    ("session.no_events", "No events.", "イベントはありません。"),
    (
        "session.download",
        "Download the recording",
        "録画をダウンロード",
    ),
    ("session.play", "Play", "再生"),
    (
        "session.bundle",
        "Download the evidence bundle",
        "証跡パッケージをダウンロード",
    ),
    (
        "bundle.live",
        "The session is still live: its evidence bundle can be made once it has ended.",
        "セッションはまだ継続中です。証跡パッケージは終了後に作成できます。",
    ),
    (
        "bundle.failed",
        "The evidence bundle cannot be made right now.",
        "現在、証跡パッケージを作成できません。",
    ),
    (
        "session.kill",
        "End this session now",
        "このセッションを今すぐ終了",
    ),
    ("stop.title", "Emergency stop", "緊急停止"),
    (
        "stop.intro",
        "Ends the session at once. The reason and your name are recorded with the session.",
        "セッションを直ちに終了します。理由とあなたの名前がセッションに記録されます。",
    ),
    ("stop.reason", "Reason", "理由"),
    (
        "stop.confirm",
        "I confirm: end {title} now.",
        "{title} を今すぐ終了することを確認しました。",
    ),
    (
        "stop.need_reason",
        "Give the reason for the stop.",
        "停止の理由を入力してください。",
    ),
    (
        "stop.reason_too_long",
        "The reason is too long (500 characters at most).",
        "理由が長すぎます(500文字まで)。",
    ),
    (
        "stop.need_confirm",
        "Tick the confirmation box to stop the session.",
        "確認のチェックを入れてください。",
    ),
    ("stop.back", "Back to the session", "セッションに戻る"),
    (
        "session.kill_requested",
        "The session has been asked to end.",
        "セッションの終了を要求しました。",
    ),
    (
        "session.not_live",
        "The session is not live.",
        "このセッションは接続中ではありません。",
    ),
    ("verify.intact", "intact", "正常"),
    (
        "verify.interrupted",
        "interrupted (sealed after a crash)",
        "中断（障害後に封印）",
    ),
    ("verify.incomplete", "incomplete", "不完全"),
    ("verify.tampered", "TAMPERED", "改ざんあり"),
    ("verify.unavailable", "unavailable", "確認できません"),
    ("verify.none", "no recording", "録画なし"),
    ("denials.title", "Denials", "拒否の一覧"),
    ("denials.by_rule", "By rule", "ルール別"),
    ("denials.by_user", "By user", "ユーザー別"),
    ("denials.by_day", "Per day", "日別"),
    ("denials.list", "Latest denials", "最近の拒否"),
    ("denials.days", "Days", "日数"),
    ("review.title", "Review", "確認"),
    ("review.expected", "expected", "想定内"),
    ("review.mistake", "mistake", "誤操作"),
    ("review.incident", "incident", "インシデント"),
    ("review.disposition", "Disposition", "判定"),
    ("review.comment", "Comment", "コメント"),
    ("review.submit", "Review", "確認する"),
    ("review.again", "Review again", "再確認"),
    (
        "review.bad",
        "That is not a review.",
        "確認の内容が正しくありません。",
    ),
    ("review.unreviewed", "Not yet reviewed", "未確認"),
    (
        "review.unreviewed_only",
        "Not yet reviewed only",
        "未確認のみ",
    ),
    (
        "review.unreviewed_by_rule",
        "Not yet reviewed, by rule",
        "未確認（ルール別）",
    ),
    (
        "review.unreviewed_by_contractor",
        "Not yet reviewed, by contractor",
        "未確認（委託業者別）",
    ),
    (
        "review.unreviewed_by_user",
        "Not yet reviewed, by user",
        "未確認（ユーザー別）",
    ),
    (
        "review.policy_events",
        "Policy events in sessions",
        "セッション中のポリシー適用",
    ),
    (
        "review.policy_events_none",
        "No policy event in this period.",
        "この期間にポリシー適用はありません。",
    ),
    ("review.csv", "Download CSV", "CSV をダウンロード"),
    ("live.title", "Live sessions", "接続中のセッション"),
    ("live.watch", "Watch", "監視する"),
    ("live.actions", "Actions", "操作"),
    ("watch.title", "Watching live", "ライブ監視"),
    (
        "watch.live",
        "Live: the contractor has been told you are watching.",
        "ライブ: 監視していることは作業者に通知されています。",
    ),
    (
        "watch.ended",
        "The session has ended.",
        "セッションは終了しました。",
    ),
    (
        "live.none",
        "No live sessions.",
        "接続中のセッションはありません。",
    ),
    ("nav.search", "Find", "検索"),
    (
        "search.placeholder",
        "Text typed (any case)",
        "入力された文字(大文字小文字を区別しない)",
    ),
    (
        "event.channel-stripped",
        "Channel stripped",
        "チャネルを除去",
    ),
    (
        "event.clipboard-dropped",
        "Clipboard stripped",
        "クリップボードを遮断",
    ),
    ("event.sftp-refused", "SFTP refused", "SFTPを拒否"),
    (
        "event.forwarding-refused",
        "Forwarding refused",
        "ポート転送を拒否",
    ),
    ("event.session-killed", "Killed", "強制切断"),
    (
        "event.recording-truncated",
        "Recording truncated",
        "録画の欠落",
    ),
    ("event.policy", "Policy", "ポリシー"),
    ("event.note", "Note", "メモ"),
    ("event.user-identified", "User identified", "ユーザー識別"),
    ("event.other", "Event", "イベント"),
];

/// The string for `key` in `lang` (the key itself when missing, so a gap shows, not breaks).
pub fn tr(lang: Lang, key: &'static str) -> &'static str {
    STRINGS
        .iter()
        .chain(player::STRINGS)
        .chain(labels::STRINGS)
        .chain(denials::STRINGS)
        .chain(find::STRINGS)
        .find(|(k, _, _)| *k == key)
        .map_or(key, |(_, en, ja)| match lang {
            Lang::En => en,
            Lang::Ja => ja,
        })
}

/// The template `key` in `lang` with each `{name}` replaced by its value: strings with
/// parameters ("{n} sessions", "「{value}」は日付として読めません") keep their word order in
/// each language. Values are inserted as they are; the page escapes the result.
pub fn trf(lang: Lang, key: &'static str, params: &[(&str, &str)]) -> String {
    let mut out = tr(lang, key).to_owned();
    for (name, value) in params {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_unique_and_translated() {
        let all: Vec<_> = STRINGS
            .iter()
            .chain(player::STRINGS)
            .chain(labels::STRINGS)
            .chain(denials::STRINGS)
            .chain(find::STRINGS)
            .collect();
        for (i, (k, en, ja)) in all.iter().enumerate() {
            assert!(!en.is_empty() && !ja.is_empty(), "{k}");
            assert!(
                all.iter().skip(i + 1).all(|(o, _, _)| o != k),
                "duplicate {k}"
            );
        }
    }

    #[test]
    fn accept_language_and_cookie() {
        let mut h = HeaderMap::new();
        assert_eq!(Lang::of(&h), Lang::Ja);
        h.insert(
            "accept-language",
            "en-US,en;q=0.9,ja;q=0.8".parse().unwrap(),
        );
        assert_eq!(Lang::of(&h), Lang::En);
        h.insert("cookie", "lang=ja".parse().unwrap());
        assert_eq!(Lang::of(&h), Lang::Ja);
    }
}
