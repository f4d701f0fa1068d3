//! NSQ log format (filled in by the logging work).
