"""identity: accounts, sessions, tokens and roles for the cinema platform."""
