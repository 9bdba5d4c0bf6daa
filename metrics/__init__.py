"""Pure computation over normalised CloudTrail events: the event buffer, the windowed
pumps of the original solution, and Random Cut Forest anomaly scores.

Nothing here imports Streamlit or the AWS SDK; time is passed in, never read from a clock.
"""
