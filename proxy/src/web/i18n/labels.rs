//! The words for the catalogue's and the policy's values (roles, protocols, outcomes,
//! recording states), so a Japanese page never shows `window-closed` or `console-serial`.
//! The values themselves stay the ids the command line and the catalogue use.

use policy::Protocol;
use policy::config::Role;
use recorder::catalogue::{Outcome, RecordingState};

use super::{Lang, tr};

pub(super) const STRINGS: &[(&str, &str, &str)] = &[
    ("role.contractor", "contractor", "委託業者"),
    ("role.auditor", "auditor", "監査担当"),
    ("role.security", "security", "セキュリティ担当"),
    ("role.admin", "administrator", "管理者"),
    ("role.other", "other role", "その他の役割"),
    ("protocol.rdp", "RDP", "RDP"),
    ("protocol.ssh", "SSH", "SSH"),
    (
        "protocol.console-serial",
        "serial console",
        "シリアルコンソール",
    ),
    ("protocol.console-vnc", "VNC console", "VNCコンソール"),
    ("protocol.web", "web UI", "Web画面"),
    ("protocol.other", "other protocol", "その他のプロトコル"),
    ("outcome.live", "live", "接続中"),
    ("outcome.completed", "completed", "正常終了"),
    ("outcome.denied", "denied", "拒否"),
    ("outcome.killed", "stopped", "緊急停止"),
    ("outcome.interrupted", "interrupted", "中断"),
    ("outcome.failed", "failed", "失敗"),
    ("outcome.window-closed", "window closed", "作業時間外で終了"),
    ("outcome.shutdown", "shut down", "停止により終了"),
    ("outcome.revoked", "revoked", "許可の取り消し"),
    ("outcome.other", "ended", "終了"),
    ("recording.live", "recording (live)", "録画中(接続中)"),
    (
        "sevent.clipboard stripped",
        "clipboard stripped",
        "クリップボードを除去",
    ),
    (
        "sevent.sftp refused",
        "file transfer refused",
        "ファイル転送を拒否",
    ),
    (
        "sevent.forwarding refused",
        "forwarding refused",
        "ポート転送を拒否",
    ),
    (
        "sevent.kill requested",
        "emergency stop requested",
        "緊急停止を要求",
    ),
    ("sevent.killed", "stopped", "緊急停止"),
    ("sevent.recording failed", "recording failed", "録画に失敗"),
    ("sevent.interrupted", "interrupted", "中断"),
    (
        "sevent.window closing",
        "work window closing soon",
        "作業時間の終了予告",
    ),
    ("sevent.revoked", "permission revoked", "許可の取り消し"),
    (
        "sevent.recording storage failed",
        "recording storage failed",
        "録画の保存に失敗",
    ),
    (
        "sevent.interrupted session sealed",
        "interrupted recording sealed",
        "中断した録画を封印",
    ),
    (
        "sevent.retention deleted",
        "deleted by retention",
        "保存期間満了により削除",
    ),
    ("sevent.watcher joined", "watcher joined", "監視者が参加"),
    ("sevent.watcher left", "watcher left", "監視者が退出"),
    ("sevent.review", "reviewed", "レビュー"),
    (
        "sevent.evidence exported",
        "evidence exported",
        "証跡を出力",
    ),
    ("sevent.other", "event", "イベント"),
    ("recording.complete", "complete", "完了"),
    ("recording.incomplete", "incomplete", "不完全"),
    ("recording.sealed", "cut short, sealed", "中断(封印済み)"),
    (
        "recording.deleted",
        "deleted (retention)",
        "削除済み(保存期間満了)",
    ),
    ("recording.other", "unknown", "不明"),
];

/// The role's name in `lang`.
pub fn role(lang: Lang, r: Role) -> &'static str {
    tr(
        lang,
        match r {
            Role::Contractor => "role.contractor",
            Role::Auditor => "role.auditor",
            Role::Security => "role.security",
            Role::Admin => "role.admin",
            _ => "role.other",
        },
    )
}

/// The protocol's name in `lang` ("serial console", "シリアルコンソール").
pub fn protocol(lang: Lang, p: Protocol) -> &'static str {
    tr(
        lang,
        match p {
            Protocol::Rdp => "protocol.rdp",
            Protocol::Ssh => "protocol.ssh",
            Protocol::ConsoleSerial => "protocol.console-serial",
            Protocol::ConsoleVnc => "protocol.console-vnc",
            Protocol::Web => "protocol.web",
            _ => "protocol.other",
        },
    )
}

/// How a session ended, in `lang`.
pub fn outcome(lang: Lang, o: Outcome) -> &'static str {
    tr(
        lang,
        match o {
            Outcome::Live => "outcome.live",
            Outcome::Completed => "outcome.completed",
            Outcome::Denied => "outcome.denied",
            Outcome::Killed => "outcome.killed",
            Outcome::Interrupted => "outcome.interrupted",
            Outcome::Failed => "outcome.failed",
            Outcome::WindowClosed => "outcome.window-closed",
            Outcome::Shutdown => "outcome.shutdown",
            Outcome::Revoked => "outcome.revoked",
            _ => "outcome.other",
        },
    )
}

/// A recording's state, in `lang`.
pub fn recording_state(lang: Lang, s: RecordingState) -> &'static str {
    tr(
        lang,
        match s {
            RecordingState::Live => "recording.live",
            RecordingState::Complete => "recording.complete",
            RecordingState::Incomplete => "recording.incomplete",
            RecordingState::Sealed => "recording.sealed",
            RecordingState::Deleted => "recording.deleted",
            _ => "recording.other",
        },
    )
}

/// A catalogue session event's kind (`event_kind::*`), in `lang`; an unknown kind is "event"
/// and the page shows the kind beside it.
pub fn session_event(lang: Lang, kind: &str) -> Option<&'static str> {
    STRINGS
        .iter()
        .find(|(k, _, _)| k.strip_prefix("sevent.") == Some(kind))
        .map(|(_, en, ja)| match lang {
            Lang::En => *en,
            Lang::Ja => *ja,
        })
}
