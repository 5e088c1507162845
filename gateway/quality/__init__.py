"""Partner quality: advertisers' feedback (conversions, returns), the durable daily ledger, the
partner report and the quality metrics."""
