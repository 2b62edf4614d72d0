//! The scripted fake ACP agent: corner cases real agents do not produce on demand.
