/*
 * client/version.c — run-time version of libvlmclient, so an application can check that the
 * library it loaded matches the headers it was compiled with.
 */
#include "config.h"
#include "vlm/version.h"

_Static_assert(VLM_VERSION_MAJOR == VLM_VERSION_MAJOR_BUILD &&
	       VLM_VERSION_MINOR == VLM_VERSION_MINOR_BUILD &&
	       VLM_VERSION_PATCH == VLM_VERSION_PATCH_BUILD,
	       "include/vlm/version.h disagrees with meson.build's project version");

int vlm_version_major(void)
{
	return VLM_VERSION_MAJOR;
}

int vlm_version_minor(void)
{
	return VLM_VERSION_MINOR;
}

int vlm_version_patch(void)
{
	return VLM_VERSION_PATCH;
}

const char *vlm_version_string(void)
{
	return VLM_VERSION_STRING;
}

bool vlm_check_version(int major, int minor, int patch)
{
	return VLM_CHECK_VERSION(major, minor, patch);
}

int vlm_version(void)
{
	return VLM_VERSION_MAJOR_BUILD * 10000 + VLM_VERSION_MINOR_BUILD * 100 + VLM_VERSION_PATCH_BUILD;
}
