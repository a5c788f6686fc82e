//! Tests of verifying real tokens: a `crit` header refused (RFC 7515
//! §4.1.11), and refusals that name the claim in plain words, never the
//! library's types.

use super::*;

const SECRET: &str = "a secret of the tests";

fn verifier() -> JwtVerifier {
    let key = DecodingKey::from_secret(SECRET.as_bytes());
    JwtVerifier {
        keys: Keys::Static(VerifyingKey {
            algorithms: family_algorithms(key.family()),
            key,
        }),
        allowed: None,
        issuer: None,
        audience: None,
        leeway: 0,
        user_claim: "sub".to_owned(),
        name_claim: "name".to_owned(),
        email_claim: "email".to_owned(),
    }
}

fn signed(header: &jsonwebtoken::Header, claims: &Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(header, claims, &key).expect("token")
}

fn in_an_hour() -> u64 {
    jsonwebtoken::get_current_timestamp() + 3600
}

async fn refusal(token: &str) -> AuthError {
    verifier()
        .verify(Some(&format!("Bearer {token}")))
        .await
        .expect_err("refused")
}

#[tokio::test]
async fn a_critical_extension_is_refused() {
    let claims = serde_json::json!({"sub": "alice", "exp": in_an_hour()});
    let plain = jsonwebtoken::Header::default();
    let accepted = verifier()
        .verify(Some(&format!("Bearer {}", signed(&plain, &claims))))
        .await;
    assert_eq!(accepted, Ok(Identity::user("alice")));
    let mut critical = jsonwebtoken::Header {
        crit: Some(vec!["exp-ext".to_owned()]),
        ..Default::default()
    };
    critical.extras.insert("exp-ext", true);
    let AuthError::Rejected(why) = refusal(&signed(&critical, &claims)).await else {
        panic!("not a rejection");
    };
    assert!(why.contains("`crit`"), "{why}");
}

#[tokio::test]
async fn refusals_name_the_claim_not_the_library() {
    let header = jsonwebtoken::Header::default();
    let not_a_date = |claim: &str| {
        format!("the `{claim}` claim is not a NumericDate (seconds since 1970, from 0 to 2^64 - 1)")
    };
    let cases = [
        (
            serde_json::json!({"sub": "alice", "exp": 1e30}),
            not_a_date("exp"),
        ),
        (
            serde_json::json!({"sub": "alice", "exp": "tomorrow"}),
            not_a_date("exp"),
        ),
        (
            serde_json::json!({"sub": "alice"}),
            "the `exp` claim is missing".to_owned(),
        ),
        (
            serde_json::json!({"sub": "alice", "exp": in_an_hour(), "nbf": "now"}),
            not_a_date("nbf"),
        ),
    ];
    for (claims, expected) in cases {
        let refused = refusal(&signed(&header, &claims)).await;
        assert_eq!(refused, AuthError::Rejected(expected), "{claims}");
    }
    // A header that is not JSON, and a token that is not a JWT.
    let garbage = format!("{}.e30.c2ln", base64_url("{\"alg\":"));
    assert_eq!(
        refusal(&garbage).await,
        AuthError::Malformed("its header is not a JSON object naming a known `alg`".into())
    );
    assert_eq!(
        refusal("not-a-jwt").await,
        AuthError::Malformed("it is not three base64url parts separated by dots".into())
    );
}

fn base64_url(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}
