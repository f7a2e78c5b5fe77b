//! The denials dashboard's strings (key, English, Japanese), with the rules' names.
//!
//! A rule's name is under `rule.` and its id (`rule.zone.path`), a severity's under
//! `severity.` and its id. The rule ids themselves stay as interfaces.md spells them and are
//! shown beside the names, so a reviewer can match a row with `sekisho denials list`.

pub(super) const STRINGS: &[(&str, &str, &str)] = &[
    // The page.
    ("denials.filter_label", "Filter denials", "拒否の絞り込み"),
    ("denials.period", "Period", "期間"),
    (
        "denials.period_days",
        "The last {days} days, {from} to {to}",
        "過去{days}日間({from}〜{to})",
    ),
    ("denials.period_dates", "{from} to {to}", "{from}〜{to}"),
    (
        "denials.total",
        "{n} denials in this period; the previous period of the same length had {prev} ({change}).",
        "この期間の拒否は{n}件です。同じ長さの前の期間は{prev}件でした({change})。",
    ),
    (
        "denials.none",
        "No denial matches these filters in this period.",
        "この期間に条件に合う拒否はありません。",
    ),
    (
        "denials.listed",
        "The {shown} most serious of {n} are listed, critical first, then newest first.",
        "{n}件のうち重大度の高い{shown}件を表示しています(重大度順、同じ重大度では新しい順)。",
    ),
    (
        "denials.sorted",
        "Listed by severity, critical first, then newest first.",
        "重大度の高い順、同じ重大度では新しい順に表示しています。",
    ),
    ("denials.by_door", "By door", "入口別"),
    ("denials.previous", "Previous period", "前の期間"),
    ("denials.change", "Change", "増減"),
    ("denials.door", "Door", "入口"),
    ("denials.severity", "Severity", "重大度"),
    ("denials.links", "Session or decision", "セッション・判定"),
    (
        "denials.open_session",
        "Open the session",
        "セッションを開く",
    ),
    (
        "denials.this_decision",
        "Link to this decision",
        "この判定へのリンク",
    ),
    ("denials.any_rule", "any rule", "すべてのルール"),
    (
        "denials.source_hint",
        "address or prefix",
        "アドレスまたは先頭部分",
    ),
    // Bad filters: what is wrong and what to do, never a parser's words.
    (
        "denials.bad_rule",
        "There is no rule called \u{201c}{value}\u{201d}; pick one from the list.",
        "「{value}」というルールはありません。一覧から選んでください。",
    ),
    (
        "denials.bad_severity",
        "There is no severity called \u{201c}{value}\u{201d}; pick one from the list.",
        "「{value}」という重大度はありません。一覧から選んでください。",
    ),
    (
        "denials.bad_source",
        "\u{201c}{value}\u{201d} is not an address; write an address like 127.0.10.11 or its beginning like 127.0.10.",
        "「{value}」はアドレスとして読めません。127.0.10.11 のようなアドレスか、127.0.10. のような先頭部分を入力してください。",
    ),
    (
        "denials.bad_days",
        "The number of days must be a whole number from 1 to {max}.",
        "日数は1から{max}までの整数で入力してください。",
    ),
    // Severities, most serious first.
    ("severity.critical", "critical", "重大"),
    ("severity.high", "high", "高"),
    ("severity.medium", "medium", "中"),
    ("severity.low", "low", "低"),
    ("severity.any", "any severity", "すべての重大度"),
    // The rules' names (interfaces.md lists the ids).
    (
        "rule.source.unknown",
        "Unknown source address",
        "不明な接続元",
    ),
    (
        "rule.source.desktop-mismatch",
        "Desktop used by another user",
        "他の利用者の仮想デスクトップからの接続",
    ),
    ("rule.target.unknown", "Unknown target", "不明な接続先"),
    ("rule.user.unknown", "Unknown user", "不明なユーザー"),
    (
        "rule.zone.path",
        "Zone breach (access path may not reach the zone)",
        "ゾーン違反(その経路から接続できないゾーン)",
    ),
    (
        "rule.contract.none",
        "No maintenance contract",
        "保守契約なし",
    ),
    (
        "rule.contract.expired",
        "Contract not in force",
        "契約期間外",
    ),
    (
        "rule.contract.window",
        "Outside the work window",
        "作業時間外",
    ),
    (
        "rule.rdp.vdi-to-vm",
        "RDP from a desktop to a virtual machine",
        "仮想デスクトップから仮想マシンへの RDP",
    ),
    (
        "rule.rdp.hop-no-console",
        "RDP hop without a live console",
        "コンソール接続のない RDP 中継",
    ),
    (
        "rule.console.physical",
        "Console asked of a physical server",
        "物理サーバーへのコンソール要求",
    ),
    (
        "rule.console.unavailable",
        "Console not configured",
        "コンソール未設定",
    ),
    (
        "rule.ssh.vdi-to-vm",
        "SSH from a desktop to a virtual machine",
        "仮想デスクトップから仮想マシンへの SSH",
    ),
    (
        "rule.ssh.forwarding",
        "SSH port forwarding",
        "SSH ポート転送",
    ),
    (
        "rule.ssh.file-transfer",
        "SSH file transfer",
        "SSH ファイル転送",
    ),
    (
        "rule.sekisho.unavailable",
        "Sekisho could not decide safely",
        "関所が安全に判定できない状態",
    ),
    (
        "rule.credential.missing",
        "Target credential missing",
        "接続先の認証情報なし",
    ),
    (
        "rule.credential.refused",
        "Target refused the stored credential",
        "接続先が保管済み認証情報を拒否",
    ),
    (
        "rule.rdp.server-cert-changed",
        "RDP server certificate changed",
        "RDP サーバー証明書の変更",
    ),
    (
        "rule.console.host-key-changed",
        "Console host key changed",
        "コンソールのホスト鍵の変更",
    ),
    (
        "rule.vnc.ticket-invalid",
        "Invalid VNC console ticket",
        "無効な VNC コンソールチケット",
    ),
    ("rule.auth.failed", "Failed login", "ログイン失敗"),
    (
        "rule.target.changed",
        "Target changed during the session",
        "セッション中の接続先設定変更",
    ),
    (
        "rule.auth.second-factor",
        "Matrix card not passed",
        "マトリクスカード未認証",
    ),
    (
        "rule.supervision.absent",
        "Supervised target with nobody watching",
        "監視者不在(監視必須の接続先)",
    ),
    (
        "rule.rdp.physical",
        "RDP to a physical server",
        "物理サーバーへの RDP",
    ),
    (
        "rule.rdp.hop-from-console",
        "RDP hop from a console",
        "コンソールからの RDP 中継",
    ),
    (
        "rule.console.vm",
        "Virtual machine console",
        "仮想マシンのコンソール",
    ),
    (
        "rule.ssh.physical",
        "SSH to a physical server",
        "物理サーバーへの SSH",
    ),
    (
        "rule.other",
        "Rule unknown to this version",
        "このバージョンでは不明なルール",
    ),
];
