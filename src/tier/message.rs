//! What nodes tell each other on the invalidation channel: which cached things
//! changed. One message is one line naming the sending node, then one line per change:
//!
//! ```text
//! 3f9c2a7e01b4d6c8
//! link<TAB><domain><TAB><code>    a link (domain empty for the default domain)
//! domains                         the registered domains
//! keys                            API keys (revoked, expired, a user removed)
//! all                             everything (changes were lost: clear the cache)
//! ```
//!
//! Plain text, so `redis-cli subscribe hop:invalidate` shows what a cluster does.
//! Neither codes nor domain names can hold a tab or a newline. A line of a kind this
//! node does not know is skipped, so a newer node can add kinds.

/// One cached thing that changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Link { domain: String, code: String },
    Domains,
    Keys,
    Everything,
}

/// A message on the channel: who sent it, what changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub node: String,
    pub changes: Vec<Change>,
}

impl Message {
    pub fn encode(&self) -> String {
        let mut text = self.node.clone();
        for change in &self.changes {
            text.push('\n');
            match change {
                Change::Link { domain, code } => {
                    text.push_str("link\t");
                    text.push_str(domain);
                    text.push('\t');
                    text.push_str(code);
                }
                Change::Domains => text.push_str("domains"),
                Change::Keys => text.push_str("keys"),
                Change::Everything => text.push_str("all"),
            }
        }
        text
    }

    /// `None` for a payload that is not a message (no node line).
    pub fn decode(text: &str) -> Option<Self> {
        let mut lines = text.split('\n');
        let node = lines.next().filter(|node| !node.is_empty())?.to_owned();
        let changes = lines
            .filter_map(|line| {
                let mut fields = line.split('\t');
                Some(match fields.next()? {
                    "link" => Change::Link {
                        domain: fields.next()?.to_owned(),
                        code: fields.next().filter(|code| !code.is_empty())?.to_owned(),
                    },
                    "domains" => Change::Domains,
                    "keys" => Change::Keys,
                    "all" => Change::Everything,
                    _ => return None,
                })
            })
            .collect();
        Some(Self { node, changes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_unknown_lines_are_skipped() {
        let message = Message {
            node: "n1".into(),
            changes: vec![
                Change::Link {
                    domain: String::new(),
                    code: "abc".into(),
                },
                Change::Link {
                    domain: "go.example.com".into(),
                    code: "promo".into(),
                },
                Change::Domains,
                Change::Keys,
                Change::Everything,
            ],
        };
        let text = message.encode();
        assert_eq!(
            text,
            "n1\nlink\t\tabc\nlink\tgo.example.com\tpromo\ndomains\nkeys\nall"
        );
        assert_eq!(Message::decode(&text), Some(message));
        let newer = Message::decode("n2\nsessions\tx\nlink\t\tz").unwrap();
        assert_eq!(
            newer.changes,
            vec![Change::Link {
                domain: String::new(),
                code: "z".into()
            }]
        );
        assert_eq!(Message::decode(""), None);
        assert_eq!(Message::decode("n3\nlink\t\t").unwrap().changes, vec![]);
    }
}
