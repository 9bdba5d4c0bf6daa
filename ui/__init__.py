"""Streamlit-side helpers shared by the pages: the per-process runtime and chart builders."""
