//! Guest-owner crypto against the facts' vectors (sev crate, sevctl, and values
//! derived from the verified formulas).

use base64::Engine;
use psp_driver::owner::crypto::nist_kdf;
use psp_driver::owner::session::{
    FwVersion, TransportKeys, WrapKeys, build_secret, launch_measure, unwrap_session,
    verify_launch_measure, wrap_session,
};

fn hx<const N: usize>(s: &str) -> [u8; N] {
    hex::decode(s).unwrap().try_into().unwrap()
}
fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[test]
fn kdf_vector() {
    let mut out = [0u8; 16];
    nist_kdf(&[0; 16], b"sev-master-secret", &[0; 16], &mut out);
    assert_eq!(hex::encode(out), "ab4d269fcc62bedb4511d56c386ce706");
}

#[test]
fn session_wrap_vector() {
    let wrap = WrapKeys::derive(&[0u8; 16], &[0; 16]);
    let keys = TransportKeys {
        tek: [0; 16],
        tik: [0; 16],
    };
    let s = wrap_session(&wrap, &keys, [0; 16], [0; 16], 0);
    assert_eq!(
        hex::encode(s.wrap_tk),
        "2137bc7f9bb8bd7c3e55a576a15d3454b3856b8ba27afadf46dcfee9f02c02c4"
    );
    assert_eq!(
        hex::encode(s.wrap_mac),
        "3176c0752738bd9d5e86689534020f528c088f16238826b000b327dee6aeed7d"
    );
    assert_eq!(
        hex::encode(s.policy_mac),
        "aa7855e13839dd767cd5da7c1ff5036540c9264b7a803029315e55375287b4af"
    );
    // And the firmware side takes it back, refusing a different policy.
    assert_eq!(unwrap_session(&wrap, &s, 0).unwrap().tik, [0; 16]);
    assert!(unwrap_session(&wrap, &s, 1).is_err());
    let mut t = s;
    t.wrap_tk[0] ^= 1;
    assert!(unwrap_session(&wrap, &t, 0).is_err());
}

#[test]
fn measure_vectors() {
    // sev crate session::tests::verify.
    let m = launch_measure(
        &hx("66320db73158a35a255d051758e95ed4"),
        FwVersion {
            api_major: 0,
            api_minor: 0x12,
            build: 0x0f,
        },
        0,
        &hx("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        &hx("4fbe0bedbad6c86ae8f68971d103e554"),
    );
    assert_eq!(
        hex::encode(m),
        "6faab2daae389bcd3405a05d6cafe33c0414f7bedd0bae19ba5f38b7fd1664ea"
    );
    // sevctl measurementbuild vectors.
    let tik = hx("3569cf61a32a602b87185ac6e0f55913");
    let fw = FwVersion {
        api_major: 1,
        api_minor: 40,
        build: 40,
    };
    let nonce: [u8; 16] = b64("wxP6tRHCFrFQWxsuqZA8QA==").try_into().unwrap();
    for (ld, out) in [
        (
            b64("xkvRAfyaSizgonxAjZIAkR8TmolUabBKQKb6KJCDDSM="),
            "lswbxWxI9gckya16JQvdFtpYmNO4b+3inAPpqsgoBI7DE/q1EcIWsVBbGy6pkDxA",
        ),
        (
            hex::decode("4b47fec6f851487c33714c8a00a832a1b705ad0a7cac4a647388eccfa9f0c570")
                .unwrap(),
            "h3auYbWQnVW7EGLWN4Hf9SN0oEYMPU2sK4bLnefWPwvDE/q1EcIWsVBbGy6pkDxA",
        ),
    ] {
        let ld: [u8; 32] = ld.try_into().unwrap();
        let want: [u8; 48] = b64(out).try_into().unwrap();
        assert_eq!(&want[32..], &nonce);
        assert_eq!(launch_measure(&tik, fw, 3, &ld, &nonce), want[..32]);
        verify_launch_measure(&tik, fw, 3, &ld, &want).unwrap();
        let mut bad = want;
        bad[0] ^= 1;
        assert!(verify_launch_measure(&tik, fw, 3, &ld, &bad).is_err());
    }
    // SYN64K, facts §8.4.
    let tik: [u8; 16] = core::array::from_fn(|i| i as u8);
    let nonce: [u8; 16] = core::array::from_fn(|i| 0x10 + i as u8);
    let m = launch_measure(
        &tik,
        FwVersion {
            api_major: 0,
            api_minor: 24,
            build: 15,
        },
        1,
        &hx("dac893496e53bf1a5643d761be49395899612ebe0178de53d93e1d6c373736fb"),
        &nonce,
    );
    assert_eq!(
        hex::encode(m),
        "eb20920036526031edb5cb6c0f09476d365612f3b0d56deaa9ed91484d07e380"
    );
}

#[test]
fn secret_packet_vector() {
    let keys = TransportKeys {
        tek: [0x11; 16],
        tik: core::array::from_fn(|i| i as u8),
    };
    let measure = hx("eb20920036526031edb5cb6c0f09476d365612f3b0d56deaa9ed91484d07e380");
    let (hdr, ct) = build_secret(
        &keys,
        &measure,
        [0x22; 16],
        b"secret-payload-0123456789abcdef!",
    )
    .unwrap();
    assert_eq!(
        hex::encode(&ct),
        "7e7327ed5cbc159bebbae548b5b23d5790a948a2abfe64744681cf6b4d3d3b99"
    );
    assert_eq!(
        hex::encode(hdr.mac),
        "a9a89e01fe69a1ec5c63a628a7f75ff7bd98f58dbf2dfcfeedcc3b3530c50a75"
    );
    assert!(build_secret(&keys, &measure, [0; 16], b"not a multiple of 16").is_err());
}
