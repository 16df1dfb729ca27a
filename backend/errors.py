"""Domain errors. Each name says what the caller should do; `code` is the stable API code.

The HTTP layer maps these to RFC 9457 problem+json; the domain never speaks HTTP.
"""

from __future__ import annotations

from typing import Any


class EstafetteError(Exception):
    """Base of every error the API may show to a client, with a stable machine code."""

    code = "error"
    title = "Request failed"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra


class NotFound(EstafetteError):
    """Also used for objects the caller may not see, so ids cannot be probed (no 403)."""

    code = "not_found"
    title = "Not found"


class Forbidden(EstafetteError):
    code = "forbidden"
    title = "Not allowed"


class FreshMfaRequired(EstafetteError):
    """Admin calls need a second factor from the last minutes: re-verify with a TOTP code."""

    code = "fresh_mfa_required"
    title = "A recent second factor is required"


class InvalidCredentials(EstafetteError):
    code = "invalid_credentials"
    title = "Wrong username or password"


class OtpInvalid(EstafetteError):
    code = "otp_invalid"
    title = "Wrong one-time code"


class OtpReplayed(EstafetteError):
    code = "otp_replayed"
    title = "This one-time code was already used"


class OtpNotEnrolled(EstafetteError):
    code = "otp_not_enrolled"
    title = "Two-factor enrolment is required first"


class Locked(EstafetteError):
    """Too many failures: retry after `retry_after` seconds."""

    code = "locked"
    title = "Account temporarily locked"

    def __init__(
        self, retry_after: int, detail: str | None = None, newly_locked: bool = False
    ) -> None:
        super().__init__(detail or f"Try again in {retry_after} seconds")
        self.retry_after = retry_after
        self.newly_locked = newly_locked


class CertificateRejected(EstafetteError):
    """A CPS card that cannot open a session (untrusted, expired, revoked, unknown)."""

    code = "certificate_rejected"
    title = "Card certificate rejected"


class CardRevoked(CertificateRejected):
    """The card's certificate is on its authority's revocation list: it must be replaced."""

    code = "card_revoked"
    title = "Card revoked"


class CardRevocationUnknown(CertificateRejected):
    """No current revocation list from the card's authority: the operator must refresh CRLs."""

    code = "card_revocation_unknown"
    title = "Card revocation status unknown"


class TokenRevoked(EstafetteError):
    code = "token_revoked"
    title = "This session has ended"


class CredentialsChanged(EstafetteError):
    """The password, the TOTP or the account changed after this token was issued: sign in."""

    code = "credentials_changed"
    title = "The account's credentials have changed"


class SessionExpired(EstafetteError):
    """The session reached its absolute lifetime (ESTAFETTE_SESSION_MAX_DAYS): sign in."""

    code = "session_expired"
    title = "This session has reached its maximum lifetime"


class ValidationFailed(EstafetteError):
    code = "validation_error"
    title = "The request is not valid"

    def __init__(self, errors: dict[str, Any], detail: str | None = None) -> None:
        super().__init__(detail or "One or more fields are not valid", errors=errors)


class UnsafeHeader(ValidationFailed):
    """A header value that decodes to a line break (header injection): fix it, do not retry."""

    code = "unsafe_header"
    title = "A header value holds a line break"

    def __init__(self, field: str) -> None:
        super().__init__(
            {field: ["A single line of text."]},
            detail="A value would start a new header line once decoded; nothing was sent",
        )


class Conflict(EstafetteError):
    code = "conflict"
    title = "Conflicts with the current state"


class NoPushToken(Conflict):
    """The device has registered no push token or subscription yet: nothing to test."""

    code = "no_push_token"
    title = "This device has no push token"


class RecipientOutsideTrustSpace(EstafetteError):
    code = "recipient_outside_trust_space"
    title = "Recipient outside the MSSanté trust space"


class RecipientNotInDirectory(EstafetteError):
    """The admin chose to refuse recipients unknown to the national directory
    (ESTAFETTE_DIRECTORY_UNKNOWN_RECIPIENTS=refuse); nothing was sent."""

    code = "recipient_not_in_directory"
    title = "Recipient not in the MSSanté directory"


class PayloadTooLarge(EstafetteError):
    code = "payload_too_large"
    title = "Too large"


class MailboxUnavailable(EstafetteError):
    """The operator's server could not be reached or refused us: retry later."""

    code = "mailbox_unavailable"
    title = "The mailbox server is unavailable"


class SearchUnsupported(EstafetteError):
    """A search the gateway cannot honour as asked: refused, never silently ignored."""

    code = "search_unsupported"
    title = "This search cannot be done"


class WebPushUnavailable(EstafetteError):
    """The gateway has no VAPID key (ESTAFETTE_VAPID_PRIVATE_KEY/SUBJECT): use FCM."""

    code = "web_push_unavailable"
    title = "Web Push is not configured on this gateway"


class PushServiceNotAllowed(ValidationFailed):
    """A subscription's endpoint is not at an allowed push service (a request forgery
    against the hospital's network would start there)."""

    code = "push_service_not_allowed"
    title = "This push service is not allowed"

    def __init__(self) -> None:
        super().__init__(
            {"endpoint": ["Not a push service this gateway posts to."]},
            detail="The endpoint is not at one of ESTAFETTE_WEB_PUSH_ORIGINS",
        )


class CannotCalculateChanges(EstafetteError):
    """The client's sync state is too old: it must fetch a full snapshot."""

    code = "cannot_calculate_changes"
    title = "State too old, fetch a full snapshot"


class SendFailed(EstafetteError):
    """The operator's SMTP server refused the message: nothing was sent, do not retry as is."""

    code = "send_failed"
    title = "The mail server refused the message"


class RecipientsPartiallyRefused(SendFailed):
    """Some recipients were refused, the others got the message: resend to the refused only."""

    code = "recipients_partially_refused"
    title = "Some recipients were refused"


class ArchiveRejected(EstafetteError):
    """An attached archive is unsafe to open (zip bomb, paths leaving it): not retryable."""

    code = "archive_rejected"
    title = "The archive is unsafe to open"


# -- OpenID Connect sign-in (Pro Santé Connect, the establishment's IdP) ------------------


class OidcProviderUnknown(NotFound):
    code = "oidc_provider_unknown"
    title = "No such sign-in provider"


class RedirectUriNotAllowed(EstafetteError):
    """The app asked to be sent back to a URI the establishment did not allow (RFC 8252)."""

    code = "redirect_uri_not_allowed"
    title = "This redirect URI is not allowed"


class OidcStateInvalid(EstafetteError):
    """The provider's answer names no sign-in under way (wrong, replayed or stale state)."""

    code = "oidc_state_invalid"
    title = "Unknown or expired sign-in"


class OidcProviderFailed(EstafetteError):
    """The provider refused the code or could not be reached: start the sign-in again."""

    code = "oidc_provider_failed"
    title = "The sign-in provider refused or failed"


class OidcTokenRejected(EstafetteError):
    """The provider's ID token failed a check; the subclass's code says which."""

    code = "oidc_token_rejected"
    title = "The provider's identity token was rejected"


class OidcSignatureInvalid(OidcTokenRejected):
    code = "oidc_signature_invalid"
    title = "The identity token is not signed by a key the provider publishes"


class OidcTokenExpired(OidcTokenRejected):
    code = "oidc_token_expired"
    title = "The identity token has expired"


class OidcAudienceMismatch(OidcTokenRejected):
    code = "oidc_audience_mismatch"
    title = "The identity token was issued for another client"


class OidcIssuerMismatch(OidcTokenRejected):
    code = "oidc_issuer_mismatch"
    title = "The identity token comes from another issuer"


class OidcNonceMismatch(OidcTokenRejected):
    code = "oidc_nonce_mismatch"
    title = "The identity token answers another sign-in"


class OidcAcrInsufficient(OidcTokenRejected):
    code = "oidc_acr_insufficient"
    title = "The sign-in was not strong enough"


class OidcCodeInvalid(EstafetteError):
    """The one-time code is unknown, already redeemed or expired: sign in again."""

    code = "oidc_code_invalid"
    title = "Unknown, used or expired sign-in code"


class PkceMismatch(EstafetteError):
    """The code verifier does not match the challenge the app started with (RFC 7636)."""

    code = "pkce_mismatch"
    title = "The code verifier does not match"


class AccountNotProvisioned(EstafetteError):
    """The provider knows this professional, the establishment does not (no JIT)."""

    code = "account_not_provisioned"
    title = "No account here for this identity"


class OidcIdentityTaken(Conflict):
    code = "oidc_identity_taken"
    title = "This identity is linked to another account"


class LogoutTokenRejected(EstafetteError):
    """A back-channel logout token that fails a check (OIDC Back-Channel Logout 1.0 §2.8)."""

    code = "logout_token_invalid"
    title = "The logout token was rejected"


class DirectoryUnavailable(OidcProviderFailed):
    """The IdP's directory (SCIM) could not be read: nothing was changed; try again later."""

    code = "directory_unavailable"
    title = "The IdP's directory could not be read"
