"""Payloads of the OpenID Connect sign-in (README, "Sign in with Pro Santé Connect")."""

from marshmallow import EXCLUDE, Schema, fields, validate

from mobile_api.auth.schemas import DeviceInSchema

# RFC 7636 §4.2: BASE64URL(SHA-256(verifier)) is 43 characters; a verifier 43 to 128.
_CHALLENGE = validate.Regexp(r"^[A-Za-z0-9_-]{43}$", error="BASE64URL of a SHA-256 (S256)")
_VERIFIER = validate.Regexp(r"^[A-Za-z0-9._~-]{43,128}$", error="43 to 128 unreserved characters")
_OPAQUE = validate.Regexp(r"^[\x21-\x7e]{1,128}$", error="1 to 128 printable characters")


class OidcStartSchema(Schema):
    redirect_uri = fields.String(
        required=True,
        validate=validate.Length(min=1, max=512),
        metadata={"description": "where the app is sent back: one of the allowed URIs"},
    )
    code_challenge = fields.String(required=True, validate=_CHALLENGE)
    code_challenge_method = fields.String(load_default="S256", validate=validate.OneOf(["S256"]))
    state = fields.String(
        validate=_OPAQUE, metadata={"description": "the app's own state, sent back as is"}
    )


class OidcCallbackSchema(Schema):
    """The provider's answer (RFC 6749 §4.1.2, RFC 9207's `iss`)."""

    class Meta:
        unknown = EXCLUDE

    state = fields.String(required=True, validate=validate.Length(min=1, max=256))
    code = fields.String(validate=validate.Length(min=1, max=2048))
    error = fields.String(validate=validate.Length(max=128))
    iss = fields.String(validate=validate.Length(max=512))


class OidcExchangeSchema(Schema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=128))
    code_verifier = fields.String(required=True, validate=_VERIFIER)
    device = fields.Nested(DeviceInSchema, required=True)


class OidcLinkSchema(Schema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=128))
    code_verifier = fields.String(required=True, validate=_VERIFIER)


class OidcLinkResultSchema(Schema):
    provider = fields.String(required=True)
    method = fields.String(required=True)


class LogoutTokenSchema(Schema):
    logout_token = fields.String(required=True, validate=validate.Length(min=1, max=16384))


class SignInMethodSchema(Schema):
    name = fields.String(
        required=True, metadata={"description": "the provider's name in /auth/oidc/{provider}"}
    )
    kind = fields.String(
        required=True,
        validate=validate.OneOf(["psc", "idp"]),
        metadata={"description": "`psc`: Pro Santé Connect; `idp`: the establishment's IdP"},
    )
    label = fields.String(required=True, metadata={"description": "what its button says"})


class SignInMethodsSchema(Schema):
    methods = fields.List(fields.Nested(SignInMethodSchema), required=True)
