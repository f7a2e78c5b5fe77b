//! The player page's strings (key, English, Japanese): kept apart from the rest of the desk
//! because the player has many of its own.

pub(super) const STRINGS: &[(&str, &str, &str)] = &[
    ("player.title", "Player", "再生"),
    (
        "player.undecodable",
        "This recording cannot be decoded for playback (yet); download it to inspect it.",
        "この録画は(まだ)再生用に復号できません。ダウンロードして確認してください。",
    ),
    (
        "player.no_recording",
        "This session has no recording.",
        "このセッションには録画がありません。",
    ),
    ("player.pause", "Pause", "一時停止"),
    (
        "player.skip_idle",
        "Skip idle periods",
        "無操作の時間を飛ばす",
    ),
    ("player.idle", "idle", "無操作"),
    ("player.pointer", "Show the pointer", "マウスポインタを表示"),
    ("player.events", "Policy events", "ポリシーイベント"),
    ("player.search", "Search", "検索"),
    (
        "player.search_placeholder",
        "Text on screen or typed keys",
        "画面の文字または入力したキー",
    ),
    ("player.no_hits", "Not found.", "見つかりません。"),
];
