"""HTTP routes (thin): they parse, call the job store or the checks, and render."""
