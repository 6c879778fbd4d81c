//! Text and key combinations as RFB key events (X keysyms), sans-IO: what `POST
//! /vnc/<instance>/type` and `/keys` (and `tcvnc type`, `tcvnc keys`) send to a console.
//! Everything is checked before the first stroke, so a refusal types nothing.
//!
//! Typing is ASCII only: printable ASCII, `\n` (Return) and `\t` (Tab). Latin-1 would be
//! expressible (its keysyms are its code points) but consoles that turn keysyms into scan
//! codes through a US keymap, QEMU's among them, have no key for `é` and drop or mistype
//! it, so it is refused with the other non-ASCII characters rather than typed wrongly.
//! Characters that need Shift on a US layout are wrapped in Shift_L so that such consoles
//! produce them; X-based servers accept the same events.

use std::fmt;

/// RFB KeyEvent's message type.
const KEY_EVENT: u8 = 4;

/// X keysyms used by name.
pub mod keysym {
    /// Return (Enter).
    pub const RETURN: u32 = 0xff0d;
    /// Tab.
    pub const TAB: u32 = 0xff09;
    /// BackSpace.
    pub const BACKSPACE: u32 = 0xff08;
    /// Escape.
    pub const ESCAPE: u32 = 0xff1b;
    /// Delete.
    pub const DELETE: u32 = 0xffff;
    /// Insert.
    pub const INSERT: u32 = 0xff63;
    /// Home.
    pub const HOME: u32 = 0xff50;
    /// End.
    pub const END: u32 = 0xff57;
    /// Prior (Page Up).
    pub const PAGE_UP: u32 = 0xff55;
    /// Next (Page Down).
    pub const PAGE_DOWN: u32 = 0xff56;
    /// Left arrow.
    pub const LEFT: u32 = 0xff51;
    /// Up arrow.
    pub const UP: u32 = 0xff52;
    /// Right arrow.
    pub const RIGHT: u32 = 0xff53;
    /// Down arrow.
    pub const DOWN: u32 = 0xff54;
    /// F1; F2…F12 follow it.
    pub const F1: u32 = 0xffbe;
    /// Print (Print Screen).
    pub const PRINT: u32 = 0xff61;
    /// Sys_Req (Alt+SysRq on Linux consoles).
    pub const SYS_REQ: u32 = 0xff15;
    /// Pause.
    pub const PAUSE: u32 = 0xff13;
    /// Menu.
    pub const MENU: u32 = 0xff67;
    /// Shift_L.
    pub const SHIFT_L: u32 = 0xffe1;
    /// Control_L.
    pub const CONTROL_L: u32 = 0xffe3;
    /// Alt_L.
    pub const ALT_L: u32 = 0xffe9;
    /// Super_L (the Windows key).
    pub const SUPER_L: u32 = 0xffeb;
}

/// One key pressed or released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyStroke {
    /// Pressed (`true`) or released.
    pub down: bool,
    /// The X keysym.
    pub keysym: u32,
}

impl KeyStroke {
    /// A press of `keysym`.
    pub const fn press(keysym: u32) -> KeyStroke {
        KeyStroke { down: true, keysym }
    }

    /// A release of `keysym`.
    pub const fn release(keysym: u32) -> KeyStroke {
        KeyStroke {
            down: false,
            keysym,
        }
    }

    /// The 8-byte RFB KeyEvent message (type 4, down-flag, 2 bytes of padding, the keysym
    /// big-endian).
    pub fn to_rfb(self) -> [u8; 8] {
        let k = self.keysym.to_be_bytes();
        [KEY_EVENT, u8::from(self.down), 0, 0, k[0], k[1], k[2], k[3]]
    }
}

/// Every stroke of `strokes` as consecutive RFB KeyEvent messages.
pub fn to_rfb(strokes: &[KeyStroke]) -> Vec<u8> {
    strokes.iter().flat_map(|s| s.to_rfb()).collect()
}

/// Printable ASCII that needs Shift on a US keyboard besides the capital letters.
const SHIFTED_PUNCTUATION: &str = "~!@#$%^&*()_+{}|:\"<>?";

/// Whether `c` needs Shift on a US keyboard.
fn needs_shift(c: char) -> bool {
    c.is_ascii_uppercase() || SHIFTED_PUNCTUATION.contains(c)
}

/// The keysym that types `c` in [`type_text`], or `None` when it cannot be typed.
fn typing_keysym(c: char) -> Option<u32> {
    match c {
        '\n' => Some(keysym::RETURN),
        '\t' => Some(keysym::TAB),
        ' '..='~' => Some(u32::from(c)),
        _ => None,
    }
}

/// A character [`type_text`] refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadChar {
    /// The character.
    pub ch: char,
    /// Its position in the text, counted in characters from 1.
    pub position: usize,
}

impl fmt::Display for BadChar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ch.is_control() || self.ch.is_whitespace() {
            // Escaped: a raw control character would act on the user's terminal.
            write!(f, "{:?}", self.ch)?;
        } else {
            write!(f, "{}", self.ch)?;
        }
        write!(f, " (U+{:04X}) at {}", u32::from(self.ch), self.position)
    }
}

/// Text [`type_text`] refuses: every character that cannot be typed, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untypable {
    /// Every refused character (the message shows the first [`Untypable::SHOWN`]).
    pub chars: Vec<BadChar>,
}

impl Untypable {
    /// How many characters the message names before "and N more".
    pub const SHOWN: usize = 10;
}

impl fmt::Display for Untypable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.chars.len();
        if n == 1 {
            write!(f, "1 character cannot be typed into a console: ")?;
        } else {
            write!(f, "{n} characters cannot be typed into a console: ")?;
        }
        for (i, c) in self.chars.iter().take(Self::SHOWN).enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{c}")?;
        }
        if n > Self::SHOWN {
            write!(f, " and {} more", n - Self::SHOWN)?;
        }
        write!(
            f,
            " (positions count characters from 1); type ASCII only (printable, newline, tab), or use keys for special keys"
        )
    }
}

impl std::error::Error for Untypable {}

/// The strokes that type `text` on a US layout: each character pressed and released,
/// those that need Shift (capitals, `~!@#$%^&*()_+{}|:"<>?`) inside a Shift_L press and
/// release; `\n` is Return and `\t` Tab.
///
/// # Errors
/// [`Untypable`] listing every character outside printable ASCII, `\n` and `\t` (other
/// control characters, `\r` included, and anything non-ASCII); nothing is typed then.
pub fn type_text(text: &str) -> Result<Vec<KeyStroke>, Untypable> {
    let bad: Vec<BadChar> = text
        .chars()
        .enumerate()
        .filter(|(_, c)| typing_keysym(*c).is_none())
        .map(|(i, ch)| BadChar {
            ch,
            position: i + 1,
        })
        .collect();
    if !bad.is_empty() {
        return Err(Untypable { chars: bad });
    }
    let mut out = Vec::with_capacity(text.len() * 2);
    for c in text.chars() {
        let Some(k) = typing_keysym(c) else {
            continue; // checked above
        };
        let shift = needs_shift(c);
        if shift {
            out.push(KeyStroke::press(keysym::SHIFT_L));
        }
        out.push(KeyStroke::press(k));
        out.push(KeyStroke::release(k));
        if shift {
            out.push(KeyStroke::release(keysym::SHIFT_L));
        }
    }
    Ok(out)
}

/// The modifiers: canonical name, aliases, keysym.
const MODIFIERS: &[(&str, &[&str], u32)] = &[
    ("ctrl", &["control"], keysym::CONTROL_L),
    ("alt", &[], keysym::ALT_L),
    ("shift", &[], keysym::SHIFT_L),
    ("super", &["win", "meta"], keysym::SUPER_L),
];

/// The named keys: canonical name, aliases, keysym (F1…F12 are handled apart).
const NAMED: &[(&str, &[&str], u32)] = &[
    ("enter", &["return"], keysym::RETURN),
    ("tab", &[], keysym::TAB),
    ("esc", &["escape"], keysym::ESCAPE),
    ("backspace", &[], keysym::BACKSPACE),
    ("delete", &["del"], keysym::DELETE),
    ("insert", &["ins"], keysym::INSERT),
    ("home", &[], keysym::HOME),
    ("end", &[], keysym::END),
    ("pageup", &["pgup"], keysym::PAGE_UP),
    ("pagedown", &["pgdn"], keysym::PAGE_DOWN),
    ("up", &[], keysym::UP),
    ("down", &[], keysym::DOWN),
    ("left", &[], keysym::LEFT),
    ("right", &[], keysym::RIGHT),
    ("space", &[], 0x20),
    ("minus", &[], 0x2d),
    ("plus", &[], 0x2b),
    ("print", &["printscreen"], keysym::PRINT),
    ("sysrq", &[], keysym::SYS_REQ),
    ("pause", &[], keysym::PAUSE),
    ("menu", &[], keysym::MENU),
];

/// Looks `name` (lowercase) up in `table`.
fn lookup(table: &[(&str, &[&str], u32)], name: &str) -> Option<u32> {
    table
        .iter()
        .find(|(n, aliases, _)| *n == name || aliases.contains(&name))
        .map(|&(_, _, k)| k)
}

/// F1…F12.
fn function_key(name: &str) -> Option<u32> {
    let digits = name.strip_prefix('f')?;
    if digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u32 = digits.parse().ok()?;
    (1..=12).contains(&n).then(|| keysym::F1 + n - 1)
}

/// The valid names, for [`BadCombo`]'s message.
fn valid_names() -> String {
    let list = |table: &[(&str, &[&str], u32)]| {
        table
            .iter()
            .map(|(n, aliases, _)| {
                if aliases.is_empty() {
                    (*n).to_owned()
                } else {
                    format!("{n} ({})", aliases.join(", "))
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "modifiers: {}; keys: {}, f1…f12, and any single letter, digit or punctuation character",
        list(MODIFIERS),
        list(NAMED)
    )
}

/// What is wrong with a combination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComboProblem {
    /// An empty combination (or an empty name between two `-`).
    Empty,
    /// A name that is no key.
    UnknownKey(String),
    /// A key that is not a modifier before the last `-`.
    NotAModifier(String),
    /// The same modifier twice.
    RepeatedModifier(String),
}

/// A combination [`combos`] refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadCombo {
    /// The combination as given.
    pub combo: String,
    /// Its place among those given, from 1.
    pub index: usize,
    /// What is wrong.
    pub problem: ComboProblem,
}

impl fmt::Display for BadCombo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let combo = self.combo.escape_debug();
        match &self.problem {
            ComboProblem::Empty => write!(
                f,
                "key combination {} \"{combo}\" is empty or has an empty name; write names joined by -, e.g. ctrl-alt-delete ({})",
                self.index,
                valid_names()
            ),
            ComboProblem::UnknownKey(k) => write!(
                f,
                "unknown key \"{}\" in \"{combo}\"; valid names ({}) are case-insensitive and joined by - or +, e.g. ctrl-alt-delete, alt-f2, enter",
                k.escape_debug(),
                valid_names()
            ),
            ComboProblem::NotAModifier(k) => write!(
                f,
                "\"{}\" in \"{combo}\" is not a modifier: only the last name of a combination can be a key other than ctrl, alt, shift or super; send several combinations for a sequence, e.g. alt-f2 enter",
                k.escape_debug()
            ),
            ComboProblem::RepeatedModifier(k) => {
                write!(f, "modifier \"{k}\" appears twice in \"{combo}\"")
            }
        }
    }
}

impl std::error::Error for BadCombo {}

/// Splits a lowercased, trimmed combination into names on `-` and `+`; a separator that
/// ends the combination (`ctrl--`, `-`, `shift-+`) is the key itself.
fn split_names(combo: &str) -> Vec<&str> {
    let is_sep = |c: char| c == '-' || c == '+';
    let (head, key) = match combo.char_indices().last() {
        Some((i, c)) if is_sep(c) => {
            // "ctrl--": the last "-" is the key; the one before it separates.
            let head = &combo[..i];
            let head = head.strip_suffix(is_sep).unwrap_or(head);
            (head, &combo[i..])
        }
        _ => match combo.rfind(is_sep) {
            Some(i) => (&combo[..i], &combo[i + 1..]),
            None => ("", combo),
        },
    };
    let mut names: Vec<&str> = if head.is_empty() {
        Vec::new()
    } else {
        head.split(is_sep).collect()
    };
    names.push(key);
    names
}

/// The keysym of a non-modifier key name (lowercase) and whether it needs Shift on a US
/// layout.
fn key_name(name: &str) -> Option<(u32, bool)> {
    if let Some(k) = lookup(NAMED, name).or_else(|| function_key(name)) {
        return Some((k, false));
    }
    let mut chars = name.chars();
    match (chars.next(), chars.next()) {
        // Letters as lowercase keysyms: the case comes from Shift, as on a keyboard.
        (Some(c @ ('!'..='~')), None) => Some((u32::from(c), SHIFTED_PUNCTUATION.contains(c))),
        _ => None,
    }
}

/// One combination's strokes: modifiers pressed in order, then the key (with Shift_L
/// added after the given modifiers when the key is shifted punctuation such as `?` and
/// no shift was given), then all released in reverse order.
fn combo(index: usize, raw: &str) -> Result<Vec<KeyStroke>, BadCombo> {
    let bad = |problem| BadCombo {
        combo: raw.to_owned(),
        index,
        problem,
    };
    let lower = raw.trim().to_ascii_lowercase();
    if lower.is_empty() {
        return Err(bad(ComboProblem::Empty));
    }
    let names = split_names(&lower);
    let mut held: Vec<u32> = Vec::with_capacity(names.len() + 1);
    let (last, mods) = names.split_last().ok_or_else(|| bad(ComboProblem::Empty))?;
    for m in mods {
        if m.is_empty() {
            return Err(bad(ComboProblem::Empty));
        }
        let k = lookup(MODIFIERS, m).ok_or_else(|| {
            if key_name(m).is_some() {
                bad(ComboProblem::NotAModifier((*m).to_owned()))
            } else {
                bad(ComboProblem::UnknownKey((*m).to_owned()))
            }
        })?;
        if held.contains(&k) {
            return Err(bad(ComboProblem::RepeatedModifier((*m).to_owned())));
        }
        held.push(k);
    }
    let key = match lookup(MODIFIERS, last) {
        Some(k) if held.contains(&k) => {
            return Err(bad(ComboProblem::RepeatedModifier((*last).to_owned())))
        }
        Some(k) => k,
        None => {
            let (k, shifted) =
                key_name(last).ok_or_else(|| bad(ComboProblem::UnknownKey((*last).to_owned())))?;
            if shifted && !held.contains(&keysym::SHIFT_L) {
                held.push(keysym::SHIFT_L);
            }
            k
        }
    };
    held.push(key);
    let mut out: Vec<KeyStroke> = held.iter().map(|&k| KeyStroke::press(k)).collect();
    out.extend(held.iter().rev().map(|&k| KeyStroke::release(k)));
    Ok(out)
}

/// The strokes of key combinations such as `ctrl-alt-delete`, `alt-f2`, `enter`,
/// `shift-tab`, `super`, `f12`, `ctrl-c`: each pressed in order (modifiers first) and
/// released in reverse order before the next. Names are case-insensitive and joined by
/// `-` or `+`; [`BadCombo`]'s message lists them.
///
/// # Errors
/// [`BadCombo`] for the first combination that is empty, names an unknown key, has a
/// non-modifier before its last name, or repeats a modifier; nothing is sent then.
pub fn combos(spec: &[&str]) -> Result<Vec<KeyStroke>, BadCombo> {
    let mut out = Vec::new();
    for (i, c) in spec.iter().enumerate() {
        out.extend(combo(i + 1, c)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(k: u32) -> KeyStroke {
        KeyStroke::press(k)
    }
    fn r(k: u32) -> KeyStroke {
        KeyStroke::release(k)
    }
    fn ks(c: char) -> u32 {
        u32::from(c)
    }

    #[test]
    fn plain_text_presses_and_releases_each_character() {
        let got = type_text("ab 1").expect("typable");
        assert_eq!(
            got,
            vec![
                p(ks('a')),
                r(ks('a')),
                p(ks('b')),
                r(ks('b')),
                p(0x20),
                r(0x20),
                p(ks('1')),
                r(ks('1')),
            ]
        );
    }

    #[test]
    fn shifted_characters_are_wrapped_in_shift() {
        for c in "ABZ~!@#$%^&*()_+{}|:\"<>?".chars() {
            let got = type_text(&c.to_string()).expect("typable");
            assert_eq!(
                got,
                vec![p(keysym::SHIFT_L), p(ks(c)), r(ks(c)), r(keysym::SHIFT_L)],
                "{c}"
            );
        }
        for c in "az09`-=[]\\;',./ ".chars() {
            let got = type_text(&c.to_string()).expect("typable");
            assert_eq!(got, vec![p(ks(c)), r(ks(c))], "{c:?}");
        }
    }

    #[test]
    fn newline_and_tab_are_return_and_tab() {
        let got = type_text("\n\t").expect("typable");
        assert_eq!(
            got,
            vec![
                p(keysym::RETURN),
                r(keysym::RETURN),
                p(keysym::TAB),
                r(keysym::TAB)
            ]
        );
        assert_eq!(type_text(""), Ok(vec![]));
    }

    #[test]
    fn untypable_lists_every_character_with_position_and_code_point() {
        let e = type_text("café\r\u{1b}x€").expect_err("refused");
        assert_eq!(
            e.chars,
            vec![
                BadChar {
                    ch: 'é',
                    position: 4
                },
                BadChar {
                    ch: '\r',
                    position: 5
                },
                BadChar {
                    ch: '\u{1b}',
                    position: 6
                },
                BadChar {
                    ch: '€',
                    position: 8
                },
            ]
        );
        let m = e.to_string();
        assert!(
            m.starts_with("4 characters cannot be typed into a console: é (U+00E9) at 4, '\\r' (U+000D) at 5, '\\u{1b}' (U+001B) at 6, € (U+20AC) at 8"),
            "{m}"
        );
        assert!(m.contains("type ASCII only"), "{m}");
        assert!(m.contains("use keys for special keys"), "{m}");
        assert!(!m.contains('\u{1b}'), "no raw escape in the message: {m:?}");
    }

    #[test]
    fn untypable_message_is_bounded() {
        let text = "é".repeat(100);
        let e = type_text(&text).expect_err("refused");
        assert_eq!(e.chars.len(), 100);
        let m = e.to_string();
        assert!(m.starts_with("100 characters cannot"), "{m}");
        assert!(m.contains(" and 90 more"), "{m}");
        assert_eq!(m.matches("U+00E9").count(), Untypable::SHOWN);
        let one = type_text("\u{7f}").expect_err("DEL refused");
        assert!(
            one.to_string()
                .starts_with("1 character cannot be typed into a console: '\\u{7f}' (U+007F) at 1"),
            "{one}"
        );
    }

    #[test]
    fn latin1_is_refused() {
        for c in ['\u{a0}', 'é', 'ÿ', 'ß'] {
            assert!(type_text(&c.to_string()).is_err(), "{c}");
        }
    }

    #[test]
    fn ctrl_alt_delete_presses_in_order_and_releases_in_reverse() {
        let got = combos(&["ctrl-alt-delete"]).expect("valid");
        assert_eq!(
            got,
            vec![
                p(keysym::CONTROL_L),
                p(keysym::ALT_L),
                p(keysym::DELETE),
                r(keysym::DELETE),
                r(keysym::ALT_L),
                r(keysym::CONTROL_L),
            ]
        );
        assert_eq!(combos(&["Control+Alt+Del"]), Ok(got));
    }

    #[test]
    fn combos_follow_one_another() {
        let got = combos(&["alt-f2", "enter"]).expect("valid");
        assert_eq!(
            got,
            vec![
                p(keysym::ALT_L),
                p(keysym::F1 + 1),
                r(keysym::F1 + 1),
                r(keysym::ALT_L),
                p(keysym::RETURN),
                r(keysym::RETURN),
            ]
        );
    }

    #[test]
    fn every_documented_name() {
        let cases: &[(&str, u32)] = &[
            ("enter", 0xff0d),
            ("return", 0xff0d),
            ("tab", 0xff09),
            ("esc", 0xff1b),
            ("escape", 0xff1b),
            ("backspace", 0xff08),
            ("delete", 0xffff),
            ("del", 0xffff),
            ("insert", 0xff63),
            ("home", 0xff50),
            ("end", 0xff57),
            ("pageup", 0xff55),
            ("pagedown", 0xff56),
            ("up", 0xff52),
            ("down", 0xff54),
            ("left", 0xff51),
            ("right", 0xff53),
            ("space", 0x20),
            ("f1", 0xffbe),
            ("f10", 0xffc7),
            ("f12", 0xffc9),
            ("F5", 0xffc2),
            ("super", 0xffeb),
            ("win", 0xffeb),
            ("meta", 0xffeb),
            ("ctrl", 0xffe3),
            ("shift", 0xffe1),
            ("alt", 0xffe9),
            ("sysrq", 0xff15),
            ("c", 0x63),
            ("C", 0x63),
            ("7", 0x37),
            ("/", 0x2f),
            ("-", 0x2d),
            ("minus", 0x2d),
            ("=", 0x3d),
        ];
        for &(name, k) in cases {
            assert_eq!(combos(&[name]), Ok(vec![p(k), r(k)]), "{name}");
        }
    }

    #[test]
    fn modifiers_with_keys() {
        assert_eq!(
            combos(&["shift-tab"]),
            Ok(vec![
                p(keysym::SHIFT_L),
                p(keysym::TAB),
                r(keysym::TAB),
                r(keysym::SHIFT_L)
            ])
        );
        assert_eq!(
            combos(&["CTRL-C"]),
            Ok(vec![
                p(keysym::CONTROL_L),
                p(0x63),
                r(0x63),
                r(keysym::CONTROL_L)
            ])
        );
        // The separator as the key.
        assert_eq!(
            combos(&["ctrl--"]),
            Ok(vec![
                p(keysym::CONTROL_L),
                p(0x2d),
                r(0x2d),
                r(keysym::CONTROL_L)
            ])
        );
        assert_eq!(
            combos(&["ctrl-+"]),
            Ok(vec![
                p(keysym::CONTROL_L),
                p(keysym::SHIFT_L),
                p(0x2b),
                r(0x2b),
                r(keysym::SHIFT_L),
                r(keysym::CONTROL_L)
            ])
        );
        // Shifted punctuation gets Shift once.
        assert_eq!(
            combos(&["?"]),
            Ok(vec![
                p(keysym::SHIFT_L),
                p(0x3f),
                r(0x3f),
                r(keysym::SHIFT_L)
            ])
        );
        assert_eq!(
            combos(&["shift-?"]),
            Ok(vec![
                p(keysym::SHIFT_L),
                p(0x3f),
                r(0x3f),
                r(keysym::SHIFT_L)
            ])
        );
        // Two modifiers alone; surrounding whitespace ignored.
        assert_eq!(
            combos(&[" ctrl-alt \r"]),
            Ok(vec![
                p(keysym::CONTROL_L),
                p(keysym::ALT_L),
                r(keysym::ALT_L),
                r(keysym::CONTROL_L)
            ])
        );
    }

    #[test]
    fn bad_combos_are_refused_with_the_name_and_the_valid_names() {
        let e = combos(&["enter", "ctrl-foo"]).expect_err("refused");
        assert_eq!(e.index, 2);
        assert_eq!(e.problem, ComboProblem::UnknownKey("foo".into()));
        let m = e.to_string();
        assert!(m.contains("unknown key \"foo\" in \"ctrl-foo\""), "{m}");
        for name in [
            "ctrl (control)",
            "super (win, meta)",
            "pagedown",
            "f1…f12",
            "esc",
        ] {
            assert!(m.contains(name), "{name} in {m}");
        }

        for (spec, problem) in [
            ("", ComboProblem::Empty),
            ("   ", ComboProblem::Empty),
            ("ctrl--alt", ComboProblem::Empty),
            ("a-b", ComboProblem::NotAModifier("a".into())),
            ("enter-ctrl", ComboProblem::NotAModifier("enter".into())),
            ("ctrl-ctrl-c", ComboProblem::RepeatedModifier("ctrl".into())),
            (
                "ctrl-control",
                ComboProblem::RepeatedModifier("control".into()),
            ),
            ("f13", ComboProblem::UnknownKey("f13".into())),
            ("f0", ComboProblem::UnknownKey("f0".into())),
            ("f01", ComboProblem::UnknownKey("f01".into())),
            ("é", ComboProblem::UnknownKey("é".into())),
            (
                "ctrl-alt delete",
                ComboProblem::UnknownKey("alt delete".into()),
            ),
        ] {
            let e = combos(&[spec]).expect_err(spec);
            assert_eq!(e.problem, problem, "{spec:?}");
            assert_eq!(e.index, 1);
        }
    }

    #[test]
    fn rfb_key_event_bytes() {
        assert_eq!(
            KeyStroke::press(keysym::RETURN).to_rfb(),
            [4, 1, 0, 0, 0, 0, 0xff, 0x0d]
        );
        assert_eq!(
            KeyStroke::release(0x41).to_rfb(),
            [4, 0, 0, 0, 0, 0, 0, 0x41]
        );
        let all = to_rfb(&type_text("A").expect("typable"));
        assert_eq!(all.len(), 32);
        assert_eq!(&all[..8], &[4, 1, 0, 0, 0, 0, 0xff, 0xe1]);
    }

    /// Replays strokes: the text typed, checking that Shift is held exactly for the
    /// characters that need it and that every key is released in the end.
    fn replay(strokes: &[KeyStroke]) -> String {
        let mut shift = false;
        let mut held: Vec<u32> = Vec::new();
        let mut text = String::new();
        for s in strokes {
            if s.keysym == keysym::SHIFT_L {
                assert_ne!(shift, s.down, "shift pressed or released twice");
                shift = s.down;
                continue;
            }
            if s.down {
                assert!(held.is_empty(), "one key at a time");
                held.push(s.keysym);
                let c = match s.keysym {
                    keysym::RETURN => '\n',
                    keysym::TAB => '\t',
                    k => char::from_u32(k).expect("a character keysym"),
                };
                assert_eq!(needs_shift(c), shift, "shift state for {c:?}");
                text.push(c);
            } else {
                assert_eq!(held.pop(), Some(s.keysym), "released what was pressed");
            }
        }
        assert!(!shift && held.is_empty(), "everything released");
        text
    }

    proptest! {
        #[test]
        fn ascii_text_round_trips(text in "[ -~\n\t]{0,200}") {
            let strokes = type_text(&text).expect("ASCII is typable");
            prop_assert_eq!(replay(&strokes), text);
        }

        #[test]
        fn anything_else_is_refused_whole(text in "\\PC{0,40}", bad in "[^ -~\n\t]") {
            let mixed = format!("{text}{bad}");
            let e = type_text(&mixed).expect_err("refused");
            prop_assert!(e.chars.iter().any(|b| b.position == mixed.chars().count()));
            for b in &e.chars {
                prop_assert_eq!(mixed.chars().nth(b.position - 1), Some(b.ch));
            }
        }

        #[test]
        fn combos_are_balanced(spec in "((ctrl|alt|shift|super)-){0,3}([a-z0-9]|f[1-9]|enter|esc)") {
            match combos(&[spec.as_str()]) {
                Ok(strokes) => {
                    let n = strokes.len();
                    prop_assert!(n % 2 == 0);
                    for i in 0..n / 2 {
                        prop_assert!(strokes[i].down);
                        prop_assert_eq!(strokes[n - 1 - i], KeyStroke::release(strokes[i].keysym));
                    }
                }
                Err(e) => prop_assert!(matches!(e.problem, ComboProblem::RepeatedModifier(_))),
            }
        }
    }
}
