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
#define VLM_VERSION_MINOR 1
#define VLM_VERSION_PATCH 0

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
/* True when the loaded library is at least major.minor.patch. Since 0.1. */
VLM_EXPORT bool vlm_check_version(int major, int minor, int patch);

#ifdef __cplusplus
}
#endif

#endif /* VLM_VERSION_H */
