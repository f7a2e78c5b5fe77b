//! Decision reasons in the reader's language.
//!
//! The policy engine explains each decision with a template id and its parameters
//! ([`policy::reasons`]); the catalogue keeps both beside the English sentence. English
//! readers get the stored sentence as it is. Japanese readers get the same facts from the
//! Japanese template of the same id, after a head made of the row's own fields (protocol,
//! source, target, user). A refusal a proxy worded itself (a failed logon, a refused port
//! forward), and any decision stored before templates existed, has no template: it is read
//! by its rule, from [`BY_RULE`].

use std::collections::BTreeMap;

use policy::reasons::{Explanation, fill};
use recorder::catalogue::DenialRow;

use super::{Lang, labels};

/// The Japanese templates, by the ids of [`policy::reasons::ENGLISH`] (tested: the same ids
/// and the same placeholders).
pub const JAPANESE: &[(&str, &str)] = &[
    (
        "web.no-target",
        "Web画面から接続できるサーバーはありません。RDP、SSH またはコンソールを使ってください。",
    ),
    (
        "source.unknown",
        "{source} はVDIデスクトップでも登録済みのサーバーでもありません。割り当てられたVDIデスクトップから接続してください。",
    ),
    (
        "target.unknown.name",
        "「{name}」という接続先はありません。名前を確認するか、管理者に台帳への登録を依頼してください。",
    ),
    (
        "target.unknown.address",
        "アドレス {address} の接続先はありません。名前を確認するか、管理者に台帳への登録を依頼してください。",
    ),
    (
        "user.unknown.name",
        "ユーザー「{name}」は台帳にありません。自分のアカウントでログインするか、管理者に登録を依頼してください。",
    ),
    (
        "user.unknown.unassigned",
        "VDIデスクトップ {desktop} は誰にも割り当てられておらず、ログインしたユーザーもいません。割り当てられたデスクトップを使うか、自分のアカウントでログインしてください。",
    ),
    (
        "user.unknown.role",
        "{user} の役割は「{role}」です。セッションを開けるのは委託業者のユーザーだけです。記録の確認はWeb画面で行ってください。",
    ),
    (
        "source.desktop-mismatch",
        "VDIデスクトップ {desktop} は {owner} に割り当てられており、{user} のものではありません。自分に割り当てられたデスクトップからログインしてください。",
    ),
    (
        "rdp.hop-no-console",
        "{server} で接続中のコンソールセッションがありません。先に {server} のコンソールを開き、そこから接続してください。",
    ),
    (
        "rdp.hop-no-console.contractor",
        "{server} で {contractor} のユーザーによる接続中のコンソールセッションがありません。先に {server} のコンソールを開き、そこから接続してください。",
    ),
    (
        "zone.path",
        "{target} はゾーン {zone} にあり、接続経路 {path} からは接続できません。接続できるのは {paths} だけですので、その経路のVDIデスクトップから接続してください。",
    ),
    (
        "zone.path.hop",
        "{target} はゾーン {zone} にあり、接続経路 {path}({server} のコンソールセッション {console} の経路)からは接続できません。接続できるのは {paths} だけですので、その経路のVDIデスクトップから接続してください。",
    ),
    (
        "zone.path.closed",
        "{target} はゾーン {zone} にあり、接続経路 {path} からは接続できません。このゾーンに接続できる経路はありません。誤りと思われる場合は管理者に連絡してください。",
    ),
    (
        "zone.path.hop.closed",
        "{target} はゾーン {zone} にあり、接続経路 {path}({server} のコンソールセッション {console} の経路)からは接続できません。このゾーンに接続できる経路はありません。誤りと思われる場合は管理者に連絡してください。",
    ),
    (
        "rdp.vdi-to-vm",
        "{target} は仮想マシンです。コンソールを使うか、コンソール経由で入ったサーバーからRDPで接続してください。",
    ),
    (
        "ssh.vdi-to-vm",
        "{target} は仮想マシンで、仮想マシンにはコンソール経由でのみ接続できます。コンソールを開いてください({how})。",
    ),
    (
        "console.physical",
        "{target} は物理サーバーで、ハイパーバイザーのコンソールはありません。RDPまたはSSHで直接接続してください。",
    ),
    (
        "console.unavailable.text",
        "{target} にはテキストコンソールが設定されていません。VNCコンソールを使ってください({how})。",
    ),
    (
        "console.unavailable.vnc",
        "{target} にはVNCコンソールが設定されていません。テキストコンソールを使ってください({how})。",
    ),
    (
        "contract.none",
        "{contractor} には {target} を対象とする保守契約がありません。{target} を {contractor} の契約に追加するよう依頼してください。",
    ),
    (
        "contract.expired.not-yet",
        "{contractor} の {target} の契約期間は {from} から {until} までで、まだ始まっていません(今日は {tz} で {today})。{from} まで待つか、開始日の訂正を依頼してください。",
    ),
    (
        "contract.expired",
        "{contractor} の {target} の契約期間は {from} から {until} までで、すでに終了しています(今日は {tz} で {today})。契約の更新を依頼してください。",
    ),
    (
        "contract.window",
        "{contractor} の {target} の契約で接続できるのは {windows}({tz})だけで、現在は {weekday} {now} です。作業時間内に接続し直してください。",
    ),
    (
        "rdp.hop-from-console",
        "{console_user} の接続中のコンソールセッション {console}({server})を経由しており、{contractor} の契約は {until} まで {target} を対象としています。",
    ),
    (
        "physical",
        "{target} は物理サーバーで、{contractor} の契約は {until} までこのサーバーを対象としています。",
    ),
    (
        "console.vm",
        "{target} はハイパーバイザーのコンソール経由で接続する仮想マシンで、{contractor} の契約は {until} までこのサーバーを対象としています。",
    ),
];

/// What a refusal without a template means, by rule: the Japanese sentence (which may use
/// `{target}` and `{user}` from the row).
pub const BY_RULE: &[(&str, &str)] = &[
    (
        "source.unknown",
        "接続元がVDIデスクトップでも登録済みのサーバーでもありません。",
    ),
    (
        "source.desktop-mismatch",
        "このVDIデスクトップは別のユーザーに割り当てられています。",
    ),
    ("target.unknown", "接続先が台帳にありません。"),
    (
        "user.unknown",
        "ユーザーが台帳にないか、セッションを開ける役割ではありません。",
    ),
    (
        "zone.path",
        "この接続経路からはこのゾーンに接続できません。",
    ),
    (
        "contract.none",
        "この接続先を対象とする保守契約がありません。",
    ),
    ("contract.expired", "保守契約の期間外です。"),
    ("contract.window", "保守契約の作業時間外です。"),
    (
        "rdp.vdi-to-vm",
        "VDIから仮想マシンへのRDPは禁止されています。コンソールを使ってください。",
    ),
    (
        "rdp.hop-no-console",
        "接続元のサーバーで接続中のコンソールセッションがありません。",
    ),
    (
        "console.physical",
        "物理サーバーにはハイパーバイザーのコンソールがありません。",
    ),
    (
        "console.unavailable",
        "この種類のコンソールは設定されていません。",
    ),
    (
        "ssh.vdi-to-vm",
        "仮想マシンへの直接のSSHは禁止されています。コンソールを使ってください。",
    ),
    (
        "ssh.forwarding",
        "ポート転送は禁止されています。データをセッションの外へ持ち出すことはできません。",
    ),
    (
        "ssh.file-transfer",
        "ファイル転送は禁止されています。データをセッションの外へ持ち出すことはできません。",
    ),
    (
        "sekisho.unavailable",
        "関所が現在このセッションを記録または確認できないため、接続しませんでした。しばらくしてから再度お試しください。",
    ),
    (
        "credential.missing",
        "{target} に必要な認証情報が登録されていません。管理者に連絡してください。",
    ),
    (
        "credential.refused",
        "{target} が関所の保管する認証情報を拒否しました。管理者に連絡してください。",
    ),
    (
        "rdp.server-cert-changed",
        "{target} の証明書が登録済みのものと違います。再接続の前に管理者に連絡してください。",
    ),
    (
        "console.host-key-changed",
        "{target} のコンソールのホスト鍵が登録済みのものと違います。再接続の前に管理者に連絡してください。",
    ),
    (
        "vnc.ticket-invalid",
        "VNCコンソールのチケットが違うか、使用済み、期限切れ、または別のアドレスからのものです。SSHで新しいチケットを取得してください。",
    ),
    ("auth.failed", "認証に失敗しました。"),
    (
        "target.changed",
        "接続中に {target} の設定が変更されたため、セッションを終了しました。",
    ),
    (
        "auth.second-factor",
        "{user} はこのデスクトップから最近マトリクスカードの認証を通過していません。先にWeb画面またはSSHでカード認証を行ってから接続してください。",
    ),
    (
        "supervision.absent",
        "{target} はセキュリティ担当者の監視中にのみ利用できますが、待ち時間内に監視者が来ませんでした。",
    ),
    ("rdp.physical", "物理サーバーへのRDPを許可しました。"),
    (
        "rdp.hop-from-console",
        "コンソール経由で入ったサーバーからのRDPを許可しました。",
    ),
    (
        "console.vm",
        "仮想マシンのコンソールへの接続を許可しました。",
    ),
    ("ssh.physical", "物理サーバーへのSSHを許可しました。"),
];

/// English day names (as windows and weekdays are written) and their Japanese.
const DAYS: [(&str, &str); 7] = [
    ("mon", "月"),
    ("tue", "火"),
    ("wed", "水"),
    ("thu", "木"),
    ("fri", "金"),
    ("sat", "土"),
    ("sun", "日"),
];

/// A parameter's value as a Japanese sentence shows it: day names and list words in
/// Japanese, roles by their Japanese name; names, addresses and dates as they are.
fn japanese_value(key: &str, value: &str) -> String {
    match key {
        "windows" | "weekday" => {
            let mut out = String::with_capacity(value.len());
            let mut word = String::new();
            let flush = |word: &mut String, out: &mut String| {
                let day = DAYS
                    .iter()
                    .find(|(en, _)| word.len() >= 3 && word[..3].eq_ignore_ascii_case(en));
                match day {
                    Some((_, ja)) => out.push_str(ja),
                    None => out.push_str(word),
                }
                word.clear();
            };
            for c in value.chars() {
                if c.is_ascii_alphabetic() {
                    word.push(c);
                } else {
                    flush(&mut word, &mut out);
                    out.push(if c == ',' { '、' } else { c });
                }
            }
            flush(&mut word, &mut out);
            out.replace("、 ", "、")
        }
        "paths" => value.split(" or ").collect::<Vec<_>>().join("、"),
        "role" => {
            let role = ["contractor", "auditor", "security", "admin"]
                .into_iter()
                .position(|r| r == value);
            match role {
                Some(0) => labels_role_ja("role.contractor"),
                Some(1) => labels_role_ja("role.auditor"),
                Some(2) => labels_role_ja("role.security"),
                Some(3) => labels_role_ja("role.admin"),
                _ => value.to_owned(),
            }
        }
        _ => value.to_owned(),
    }
}

fn labels_role_ja(key: &'static str) -> String {
    super::tr(Lang::Ja, key).to_owned()
}

/// The Japanese sentence of `explanation`, when its template is known.
pub fn japanese(explanation: &Explanation) -> Option<String> {
    let template = JAPANESE
        .iter()
        .find(|(id, _)| *id == explanation.id)
        .map(|(_, t)| *t)?;
    let params: BTreeMap<String, String> = explanation
        .params
        .iter()
        .map(|(k, v)| (k.clone(), japanese_value(k, v)))
        .collect();
    Some(fill(template, &params))
}

/// The reason of a denial, in `lang`.
pub fn denial_reason(lang: Lang, row: &DenialRow) -> String {
    if lang == Lang::En {
        return row.reason.clone();
    }
    let who = match (&row.user, &row.contractor) {
        (Some(u), Some(c)) => format!("({u}、{c})"),
        (Some(u), None) => format!("({u})"),
        _ => String::new(),
    };
    let target = row.target.as_deref().unwrap_or("").trim();
    let head = if target.is_empty() {
        // A front-door refusal that named no target (the web login, a failed logon).
        format!(
            "{} からの{}接続を拒否しました{who}。",
            row.source,
            labels::protocol(lang, row.protocol)
        )
    } else {
        format!(
            "{} から {} への{}接続を拒否しました{who}。",
            row.source,
            target,
            labels::protocol(lang, row.protocol)
        )
    };
    let why = row
        .explanation
        .as_ref()
        .and_then(japanese)
        .or_else(|| {
            BY_RULE.iter().find(|(r, _)| *r == row.rule).map(|(_, t)| {
                let mut p = BTreeMap::new();
                p.insert("target".to_owned(), target.to_owned());
                p.insert("user".to_owned(), row.user.clone().unwrap_or_default());
                fill(t, &p)
            })
        })
        .unwrap_or_else(|| super::tr(lang, "reason.unknown_rule").to_owned());
    format!("{head}{why}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy::reasons::{ENGLISH, placeholders};

    #[test]
    fn every_english_template_has_a_japanese_one_with_the_same_placeholders() {
        for (id, en) in ENGLISH {
            let ja = JAPANESE
                .iter()
                .find(|(j, _)| j == id)
                .map(|(_, t)| *t)
                .unwrap_or_else(|| panic!("no Japanese template for {id}"));
            let mut a = placeholders(en);
            let mut b = placeholders(ja);
            a.sort_unstable();
            a.dedup();
            b.sort_unstable();
            b.dedup();
            assert_eq!(a, b, "{id}");
        }
        assert_eq!(
            JAPANESE.len(),
            ENGLISH.len(),
            "a Japanese template without English"
        );
    }

    #[test]
    fn every_rule_has_a_japanese_sentence() {
        for rule in policy::Rule::ALL {
            assert!(
                BY_RULE.iter().any(|(r, _)| *r == rule.as_str()),
                "{rule} has no Japanese sentence"
            );
        }
    }

    #[test]
    fn windows_days_and_lists_read_in_japanese() {
        let e = Explanation::new(
            "contract.window",
            [
                ("target", "web01".to_owned()),
                ("contractor", "acme".to_owned()),
                ("windows", "mon-fri 09:00-18:00, Sat 10:00-12:00".to_owned()),
                ("tz", "Asia/Tokyo".to_owned()),
                ("weekday", "Sun".to_owned()),
                ("now", "2026-12-06 20:00".to_owned()),
            ],
        );
        let ja = japanese(&e).unwrap();
        assert!(
            ja.contains("月-金 09:00-18:00、土 10:00-12:00(Asia/Tokyo)"),
            "{ja}"
        );
        assert!(ja.contains("現在は 日 2026-12-06 20:00"), "{ja}");
        assert_eq!(
            japanese_value("paths", "internet-vpn or ip-vpn"),
            "internet-vpn、ip-vpn"
        );
        assert_eq!(japanese_value("role", "auditor"), "監査担当");
    }
}
