"""Users, login sessions and sign-in throttling: the app's login without Streamlit.

- ``users``: the user file (streamlit-authenticator's YAML layout, bcrypt hashes, the cookie
  key), created on first start with a one-time ``admin`` password;
- ``sessions``: the logins the server still honours, so that logout really ends a session;
- ``throttle``: cooldowns after repeated failed sign-ins, per user name and per client;
- ``python -m auth users add|reset|remove|list``: the operator's command.

``ui/login.py`` puts these behind streamlit-authenticator's controllers.
"""
