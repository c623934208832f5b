/// The W3C trace id (32 lower-case hex digits) of the request being served, if any.
pub fn current_trace_id() -> Option<String> {
    None
}
