//! Target `find_answer`: a guest's answer to a search (`GET /api/find`), as
//! the host reads it: JSON Lines in pieces of any size.

use file_restore::guest::client::FindLines;
use file_restore_wire::find::{FindEvent, MAX_FIND_SKIPS};
use std::collections::VecDeque;

/// The first byte sets the matches asked for (1 to 256), the second the
/// size of the pieces the rest arrives in (1 to 256 bytes). Properties: no
/// panic; no more matches than asked and no more skips than the limit are
/// ever given out; nothing is given after the closing line; a completed
/// answer's closing line counts the matches given.
pub fn find_answer(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let max = u64::from(data[0]) + 1;
    let piece = usize::from(data[1]) + 1;
    let mut r = FindLines::new(max);
    let mut out = VecDeque::new();
    let (mut matches, mut skips, mut ended) = (0u64, 0u64, false);
    for chunk in data[2..].chunks(piece) {
        let result = r.push(chunk, &mut out);
        for ev in out.drain(..) {
            assert!(!ended, "an event after the closing line");
            match ev {
                FindEvent::Match(_) => matches += 1,
                FindEvent::Skip(_) => skips += 1,
                FindEvent::Progress(_) => {}
                FindEvent::End(end) => {
                    assert_eq!(end.matched, matches, "the end line's count was not checked");
                    ended = true;
                }
            }
        }
        assert!(matches <= max, "{matches} matches given, {max} asked for");
        assert!(skips <= MAX_FIND_SKIPS, "{skips} skip lines given");
        if result.is_err() {
            return;
        }
    }
    assert_eq!(
        r.finish().is_ok(),
        ended,
        "finish disagrees with the end line"
    );
}
