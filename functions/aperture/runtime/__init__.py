"""Process helpers: structured logs, timings, the allocator setting."""
