"""Configuration: the YAML file (partners, channels, advertisers, campaigns) and the environment."""
