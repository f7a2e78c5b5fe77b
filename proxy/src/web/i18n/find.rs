//! The Find page's strings (key, English, Japanese): the search across sessions and a
//! terminal session's list of commands run (issue #18).

pub(super) const STRINGS: &[(&str, &str, &str)] = &[
    ("find.title", "Find", "検索"),
    ("find.nav", "Find", "検索"),
    (
        "find.hint",
        "Commands run and text shown in SSH and serial console sessions, and text typed in \
         graphical sessions, as indexed when each recording was sealed. Nothing typed with echo \
         off (a password) or on a logon screen is indexed.",
        "SSH とシリアルコンソールのセッションで実行したコマンドと画面に出た文字、\
         画面操作のセッションで入力された文字を、録画の確定時に作った索引から探します。\
         表示されずに入力された文字(パスワード)やログオン画面での入力は索引に入りません。",
    ),
    (
        "find.hint_terminal",
        "Commands run and text shown in SSH and serial console sessions, as indexed when each \
         recording was sealed. Nothing typed with echo off (a password) is indexed.",
        "SSH とシリアルコンソールのセッションで実行したコマンドと画面に出た文字を、\
         録画の確定時に作った索引から探します。表示されずに入力された文字(パスワード)は索引に入りません。",
    ),
    (
        "find.hint_own",
        "Commands run and text shown in your own SSH and serial console sessions.",
        "ご自身の SSH とシリアルコンソールのセッションで実行したコマンドと画面に出た文字を探します。",
    ),
    ("find.label", "Text to find", "探す文字"),
    (
        "find.placeholder",
        "A command or words on screen (any case)",
        "コマンドや画面の文字(大文字・小文字は区別しません)",
    ),
    ("find.go", "Find", "検索"),
    ("find.kind", "Kind", "種類"),
    ("find.kind_commands", "Commands", "コマンド"),
    ("find.kind_screen", "Screen text", "画面の文字"),
    ("find.kind_typed", "Typed text", "入力された文字"),
    ("find.count", "{n} lines found.", "{n}行見つかりました。"),
    (
        "find.count_more",
        "More than {n} lines found; the first {n} are shown. Narrow the search with the filters.",
        "{n}行を超えて見つかりました。最初の{n}行を表示しています。絞り込みで範囲を狭めてください。",
    ),
    ("find.none", "Nothing found.", "見つかりませんでした。"),
    ("find.open", "Play from this moment", "この時点から再生"),
    (
        "find.too_long",
        "The text to find is longer than {max} characters.",
        "探す文字が長すぎます({max}文字まで)。",
    ),
    (
        "find.bad_kind",
        "There is no kind called \u{201c}{value}\u{201d}; pick one from the list.",
        "「{value}」という種類はありません。一覧から選んでください。",
    ),
    ("find.commands_title", "Commands run", "実行したコマンド"),
    (
        "find.commands_more",
        "Only the first {n} commands are listed; Find reaches the others.",
        "最初の{n}件だけを表示しています。それ以外は検索で探せます。",
    ),
];
