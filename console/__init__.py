"""The investigators' web console: accounts and audit (auth, audit), gallery queries and the web app."""
