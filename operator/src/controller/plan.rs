//! The reconcile decisions, as pure functions of (desired, observed), so they
//! can run any number of times and be tested without a cluster.

use crate::nsq::TopicStats;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    CreateTopic,
    CreateChannel,
    PauseTopic(bool),
    PauseChannel(bool),
}

/// What one broker needs so that it has the topic with the wanted pause state.
pub fn topic_steps(observed: Option<&TopicStats>, paused: bool) -> Vec<Step> {
    match observed {
        None if paused => vec![Step::CreateTopic, Step::PauseTopic(true)],
        None => vec![Step::CreateTopic],
        Some(t) if t.paused != paused => vec![Step::PauseTopic(paused)],
        Some(_) => vec![],
    }
}

/// What one broker needs so that it has the channel (and its topic) with the
/// wanted pause state.
pub fn channel_steps(observed: Option<&TopicStats>, channel: &str, paused: bool) -> Vec<Step> {
    let mut steps = Vec::new();
    let existing = observed.and_then(|t| t.channels.iter().find(|c| c.channel_name == channel));
    if observed.is_none() {
        steps.push(Step::CreateTopic);
    }
    match existing {
        None => {
            steps.push(Step::CreateChannel);
            if paused {
                steps.push(Step::PauseChannel(true));
            }
        }
        Some(c) if c.paused != paused => steps.push(Step::PauseChannel(paused)),
        Some(_) => {}
    }
    steps
}

/// Effective NSQ name: the spec's override or the resource's name.
pub fn effective_name(spec_name: Option<&str>, resource_name: &str) -> String {
    spec_name.unwrap_or(resource_name).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nsq::ChannelStats;

    fn topic(paused: bool, channels: &[(&str, bool)]) -> TopicStats {
        TopicStats {
            topic_name: "t".into(),
            paused,
            channels: channels
                .iter()
                .map(|(n, p)| ChannelStats {
                    channel_name: (*n).into(),
                    paused: *p,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn topic_is_created_then_left_alone() {
        assert_eq!(topic_steps(None, false), vec![Step::CreateTopic]);
        assert_eq!(
            topic_steps(None, true),
            vec![Step::CreateTopic, Step::PauseTopic(true)]
        );
        assert!(topic_steps(Some(&topic(false, &[])), false).is_empty());
    }

    #[test]
    fn pause_drift_is_set_back() {
        assert_eq!(
            topic_steps(Some(&topic(true, &[])), false),
            vec![Step::PauseTopic(false)]
        );
        assert_eq!(
            channel_steps(Some(&topic(false, &[("c", false)])), "c", true),
            vec![Step::PauseChannel(true)]
        );
    }

    #[test]
    fn channel_brings_its_topic() {
        assert_eq!(
            channel_steps(None, "c", false),
            vec![Step::CreateTopic, Step::CreateChannel]
        );
        assert_eq!(
            channel_steps(Some(&topic(false, &[("other", false)])), "c", true),
            vec![Step::CreateChannel, Step::PauseChannel(true)]
        );
        assert!(channel_steps(Some(&topic(true, &[("c", false)])), "c", false).is_empty());
    }

    #[test]
    fn names_default_to_the_resource() {
        assert_eq!(effective_name(None, "orders"), "orders");
        assert_eq!(effective_name(Some("my_topic"), "my-topic"), "my_topic");
    }
}
