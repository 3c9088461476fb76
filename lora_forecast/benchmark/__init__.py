"""A forecasting leaderboard: suites of real series, every competitor on the same rolling
windows, scores relative to seasonal naive, and the FLOPs each model spent
(``python -m lora_forecast.benchmark suite=<name>``)."""
