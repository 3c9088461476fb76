"""Forecasting new series with a trained run (``python -m lora_forecast.forecast``)."""
