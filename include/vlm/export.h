/* include/vlm/export.h — symbol visibility for libvlmclient's public API. */
#ifndef VLM_EXPORT_H
#define VLM_EXPORT_H

#if defined(VLM_BUILDING_LIBRARY) && defined(__GNUC__)
#define VLM_EXPORT __attribute__((visibility("default")))
#else
#define VLM_EXPORT
#endif

#endif
