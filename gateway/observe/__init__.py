"""What ops see: Prometheus metrics of leads, requests and caps, the decision log, JSON logs."""
