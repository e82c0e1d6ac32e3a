"""The gateway daemon: config, store, pipeline, rules and alerts, MQTT, local web app, CLI."""
