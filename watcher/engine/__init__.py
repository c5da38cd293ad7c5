"""What to poll and when: specs, the schedule, one poll, the engine."""
