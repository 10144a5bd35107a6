// Imprint's PAL configuration for the FCC test device on Linux (tests/fcc-device).
//
// The upstream example's source/pal_config_linux.h settings (no hardware RoT, no RTC, TRNG from
// the OS, SOTP flash simulated over the file system, secure time), plus what this build needs:
// Debian's mbedtls 2.28 lacks MBEDTLS_SSL_DTLS_CONNECTION_ID, so no SSL session resume; the
// simulated flash is in factory mode (its file may be created). Storage lives under "./pal",
// relative to the working directory: every device process gets its own.
#ifndef IMPRINT_PAL_CONFIG_H
#define IMPRINT_PAL_CONFIG_H

#define PAL_USE_HW_ROT 0
#define PAL_USE_HW_RTC 0
#define PAL_USE_HW_TRNG 1
#define PAL_SIMULATOR_FLASH_OVER_FILE_SYSTEM 1
#define PAL_USE_SECURE_TIME 1
#define PAL_USE_SSL_SESSION_RESUME 0
#define PAL_SIMULATOR_FLASH_FACTORY_MODE 1

#include "Linux_default.h"

#endif // IMPRINT_PAL_CONFIG_H
