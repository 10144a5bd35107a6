/* Imprint's configuration of update-client-hub for the host oracles (tests/uc-hub-oracle):
 * the Device Management Client profile with mbedtls crypto, the certificate store and the
 * vendor/class identity in KCM (a stand-in in harness_kcm.c), no tracing. */
#ifndef IMPRINT_UC_HUB_ORACLE_CONFIG_H
#define IMPRINT_UC_HUB_ORACLE_CONFIG_H
#define MBED_CLOUD_CLIENT_SUPPORT_UPDATE 1
#define ARM_UC_PROFILE_MBED_CLOUD_CLIENT 1
#define ARM_UC_FEATURE_CRYPTO_PAL 0
#define ARM_UC_FEATURE_CRYPTO_MBEDTLS 1
#define ARM_UC_FEATURE_IDENTITY_KCM 1
#define ARM_UC_FEATURE_CERT_STORE_KCM 1
#define ARM_UC_FEATURE_MANIFEST_PUBKEY 1
#define ARM_UC_FEATURE_MANIFEST_PSK 0
#endif
