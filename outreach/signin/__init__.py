"""OAuth2 sign-in for the practice's mailbox: the provider's endpoints, the token kept in the
state directory, access tokens refreshed before they expire, and ``outreach auth login``'s
flows (Microsoft's device code through msal; authorization code with PKCE or RFC 8628 device
code through authlib). mail/ asks it for a token; it never opens SMTP or IMAP itself."""
