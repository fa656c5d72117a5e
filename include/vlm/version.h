/*
 * include/vlm/version.h — compile-time and run-time version of libvlmclient.
 *
 * Compile time: VLM_VERSION_MAJOR/MINOR/PATCH and VLM_CHECK_VERSION(major, minor, patch), true when
 * the headers are at least that version. Run time: vlm_version_major() etc. report the library
 * actually loaded; vlm_check_version() is the run-time counterpart of VLM_CHECK_VERSION.
 */
#ifndef VLM_VERSION_H
#define VLM_VERSION_H

#include <stdbool.h>

#include "vlm/export.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VLM_VERSION_MAJOR 0
#define VLM_VERSION_MINOR 2
#define VLM_VERSION_PATCH 0

/* The header version as one number, MAJOR * 10000 + MINOR * 100 + PATCH (e.g. 200 for 0.2.0),
 * comparable with vlm_version(). Since 0.2. */
#define VLM_VERSION (VLM_VERSION_MAJOR * 10000 + VLM_VERSION_MINOR * 100 + VLM_VERSION_PATCH)

#define VLM_CHECK_VERSION(major, minor, patch)                                        \
	(VLM_VERSION_MAJOR > (major) ||                                               \
	 (VLM_VERSION_MAJOR == (major) && VLM_VERSION_MINOR > (minor)) ||             \
	 (VLM_VERSION_MAJOR == (major) && VLM_VERSION_MINOR == (minor) &&             \
	  VLM_VERSION_PATCH >= (patch)))

/* Version of the loaded library. Thread-safe, never fails. Since 0.1. */
VLM_EXPORT int vlm_version_major(void);
VLM_EXPORT int vlm_version_minor(void);
VLM_EXPORT int vlm_version_patch(void);
/* "MAJOR.MINOR.PATCH", static storage. Since 0.1. */
VLM_EXPORT const char *vlm_version_string(void);
/* Version of the loaded library as one number, same encoding as VLM_VERSION; an application
 * built against headers with VLM_VERSION V runs correctly with a library whose vlm_version() is
 * >= V and of the same major version. Thread-safe, never fails. Since 0.2. */
VLM_EXPORT int vlm_version(void);
/* True when the loaded library is at least major.minor.patch. Since 0.1. */
VLM_EXPORT bool vlm_check_version(int major, int minor, int patch);

#ifdef __cplusplus
}
#endif

#endif /* VLM_VERSION_H */
