//! XML framing for the relay (being written).
