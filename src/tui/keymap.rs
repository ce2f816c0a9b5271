//! The key map: one table that the event loop looks keys up in, the help overlay lists, and the status line
//! takes its reminders from, so the three cannot disagree.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// The panes, in tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Balance,
    Charts,
    Confusion,
    Compare,
    Predict,
    Roc,
}

impl Pane {
    pub const ALL: [Pane; 6] = [Pane::Balance, Pane::Charts, Pane::Confusion, Pane::Compare, Pane::Predict, Pane::Roc];
    pub fn title(self) -> &'static str {
        match self {
            Pane::Balance => "Data",
            Pane::Charts => "Charts",
            Pane::Confusion => "Confusion",
            Pane::Compare => "Compare",
            Pane::Predict => "Predict",
            Pane::Roc => "ROC",
        }
    }
    pub fn index(self) -> usize {
        Pane::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }
}

/// Everything a key can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    NextPane,
    PrevPane,
    GoTo(Pane),
    Up,
    Down,
    PageUp,
    PageDown,
    NextModel,
    PrevModel,
    Select,
    PauseResume,
    SkipModel,
    Stop,
    Quit,
    Help,
    Close,
    SmoothMore,
    SmoothLess,
    ToggleChartScale,
    ToggleSplit,
    ToggleHeatmap,
    Mark,
}

/// One row of the key map.
pub struct Binding {
    /// As shown in the help overlay.
    pub keys: &'static str,
    pub codes: &'static [KeyCode],
    pub action: Action,
    pub help: &'static str,
}

/// The key map: the event loop looks keys up here and the help overlay lists it.
pub const KEYMAP: &[Binding] = &[
    Binding { keys: "tab", codes: &[KeyCode::Tab], action: Action::NextPane, help: "next pane" },
    Binding { keys: "shift-tab", codes: &[KeyCode::BackTab], action: Action::PrevPane, help: "previous pane" },
    Binding {
        keys: "1",
        codes: &[KeyCode::Char('1')],
        action: Action::GoTo(Pane::Balance),
        help: "data: class balance",
    },
    Binding {
        keys: "2",
        codes: &[KeyCode::Char('2')],
        action: Action::GoTo(Pane::Charts),
        help: "live loss/accuracy charts",
    },
    Binding {
        keys: "3",
        codes: &[KeyCode::Char('3')],
        action: Action::GoTo(Pane::Confusion),
        help: "confusion matrix",
    },
    Binding { keys: "4", codes: &[KeyCode::Char('4')], action: Action::GoTo(Pane::Compare), help: "model comparison" },
    Binding {
        keys: "5",
        codes: &[KeyCode::Char('5')],
        action: Action::GoTo(Pane::Predict),
        help: "predict test images",
    },
    Binding {
        keys: "6",
        codes: &[KeyCode::Char('6')],
        action: Action::GoTo(Pane::Roc),
        help: "ROC and operating point",
    },
    Binding {
        keys: "↑ k",
        codes: &[KeyCode::Up, KeyCode::Char('k')],
        action: Action::Up,
        help: "move up (image list)",
    },
    Binding {
        keys: "↓ j",
        codes: &[KeyCode::Down, KeyCode::Char('j')],
        action: Action::Down,
        help: "move down (image list)",
    },
    Binding { keys: "pgup pgdn", codes: &[KeyCode::PageUp], action: Action::PageUp, help: "page up / down" },
    Binding { keys: "", codes: &[KeyCode::PageDown], action: Action::PageDown, help: "" },
    Binding {
        keys: "→ l ]",
        codes: &[KeyCode::Right, KeyCode::Char('l'), KeyCode::Char(']')],
        action: Action::NextModel,
        help: "show the next model",
    },
    Binding {
        keys: "← h [",
        codes: &[KeyCode::Left, KeyCode::Char('h'), KeyCode::Char('[')],
        action: Action::PrevModel,
        help: "show the previous model",
    },
    Binding { keys: "enter", codes: &[KeyCode::Enter], action: Action::Select, help: "classify the selected image" },
    Binding { keys: "p", codes: &[KeyCode::Char('p')], action: Action::PauseResume, help: "pause / resume training" },
    Binding { keys: "n", codes: &[KeyCode::Char('n')], action: Action::SkipModel, help: "next model (ends this one)" },
    Binding { keys: "s", codes: &[KeyCode::Char('s')], action: Action::Stop, help: "stop training (saves)" },
    Binding {
        keys: "+ -",
        codes: &[KeyCode::Char('+'), KeyCode::Char('=')],
        action: Action::SmoothMore,
        help: "more / less chart smoothing",
    },
    Binding { keys: "", codes: &[KeyCode::Char('-')], action: Action::SmoothLess, help: "" },
    Binding {
        keys: "e",
        codes: &[KeyCode::Char('e')],
        action: Action::ToggleChartScale,
        help: "charts: batch / epoch view",
    },
    Binding { keys: "v", codes: &[KeyCode::Char('v')], action: Action::ToggleSplit, help: "confusion: val / test" },
    Binding {
        keys: "g",
        codes: &[KeyCode::Char('g')],
        action: Action::ToggleHeatmap,
        help: "Grad-CAM heatmap on / off",
    },
    Binding { keys: "m", codes: &[KeyCode::Char('m')], action: Action::Mark, help: "compare: pair two models" },
    Binding { keys: "?", codes: &[KeyCode::Char('?')], action: Action::Help, help: "this help" },
    Binding { keys: "esc", codes: &[KeyCode::Esc], action: Action::Close, help: "close help / popup" },
    Binding { keys: "q", codes: &[KeyCode::Char('q')], action: Action::Quit, help: "quit (asks while training)" },
];

/// Looks a key up in the key map (ctrl-c always quits).
pub fn action_for(key: &KeyEvent) -> Option<Action> {
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Some(Action::Quit);
    }
    KEYMAP.iter().find(|b| b.codes.contains(&key.code)).map(|b| b.action)
}

/// The status line's reminders: (the actions whose first keys are shown, joined; the word after them). The first
/// two fit at 80 columns; terminals 110 columns wide get them all.
const HINTS: &[(&[Action], &str)] = &[
    (&[Action::Help], "help"),
    (&[Action::NextPane], "pane"),
    (&[Action::PrevModel, Action::NextModel], "model"),
    (&[Action::PauseResume], "pause"),
    (&[Action::SkipModel], "next"),
    (&[Action::Stop], "stop"),
    (&[Action::Quit], "quit"),
];

/// The first key the key map shows for an action ("" when it shows none).
fn first_key(action: Action) -> &'static str {
    KEYMAP
        .iter()
        .find(|b| b.action == action && !b.keys.is_empty())
        .and_then(|b| b.keys.split(' ').next())
        .unwrap_or("")
}

/// The status line's key reminders, e.g. `?:help q:quit` (`wide`: every one).
pub fn status_hints(wide: bool) -> String {
    HINTS
        .iter()
        .filter(|(actions, _)| wide || matches!(actions, [Action::Help] | [Action::Quit]))
        .map(|(actions, word)| format!("{}:{word}", actions.iter().map(|a| first_key(*a)).collect::<String>()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_has_a_key_and_help_covers_the_key_map() {
        for b in KEYMAP {
            assert!(!b.codes.is_empty());
        }
        let key = |c| KeyEvent::new(c, KeyModifiers::NONE);
        assert_eq!(action_for(&key(KeyCode::Tab)), Some(Action::NextPane));
        assert_eq!(action_for(&key(KeyCode::Char('j'))), Some(Action::Down));
        assert_eq!(action_for(&key(KeyCode::Char('5'))), Some(Action::GoTo(Pane::Predict)));
        assert_eq!(action_for(&KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)), Some(Action::Quit));
        assert_eq!(action_for(&key(KeyCode::Char('z'))), None);
    }

    #[test]
    fn the_status_line_reminds_of_keys_the_key_map_binds() {
        assert_eq!(status_hints(false), "?:help q:quit");
        assert_eq!(status_hints(true), "?:help tab:pane ←→:model p:pause n:next s:stop q:quit");
        for (actions, _) in HINTS {
            for a in *actions {
                let key = first_key(*a);
                let code = match key {
                    "tab" => KeyCode::Tab,
                    "←" => KeyCode::Left,
                    "→" => KeyCode::Right,
                    k => KeyCode::Char(k.chars().next().expect("a key")),
                };
                assert_eq!(action_for(&KeyEvent::new(code, KeyModifiers::NONE)), Some(*a), "{key}");
            }
        }
    }
}
