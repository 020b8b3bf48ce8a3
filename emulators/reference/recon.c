/*
 * reference-recon: the imagelake reference emulator's reconstruction program.
 *
 * It plays a vendor's reconstruction software inside a VM: it reads the job disk mounted at
 * /job (job.json, input/<raw files>), reconstructs every refscan file by parallel-beam
 * filtered back-projection (Ram-Lak ramp filter in the spatial domain, linear interpolation)
 * and writes one DICOM CT image per slice (explicit VR little endian, with a file meta group)
 * into output/, then result.json. The shell script run-job writes DONE after it.
 *
 * One source, two "software versions": REFSCAN_SOFTWARE_REVISION (1 or 2) selects the refscan
 * revision this build reads; any other revision is refused with a clear message, as a vendor's
 * upgrade strands older raw files. The byte layout of both revisions is in FORMAT.md.
 *
 * Build: gcc -static -O2 -DREFSCAN_SOFTWARE_REVISION=1 -DSOFTWARE_VERSION='"1.0"' -o recon
 * recon.c -lm. No other library: the guest holds nothing but busybox and this program.
 * Licence: BSD-3-Clause, like imagelake.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef REFSCAN_SOFTWARE_REVISION
#error "define REFSCAN_SOFTWARE_REVISION (1 or 2)"
#endif
#ifndef SOFTWARE_VERSION
#error "define SOFTWARE_VERSION (\"1.0\" or \"2.0\")"
#endif
#define PRODUCT "reference-recon"
#define MAX_SLICES 64
#define MAX_MATRIX 1024
#define CT_IMAGE_STORAGE "1.2.840.10008.5.1.4.1.1.2"
#define EXPLICIT_VR_LE "1.2.840.10008.1.2.1"
/* the implementation class UID of this program: 2.25 + a fixed 128-bit number */
#define IMPLEMENTATION_UID "2.25.164221795417209338232437462915766871342"

/* ---------------------------------------------------------------- log and errors -------- */
static char *g_log;
static size_t g_log_len, g_log_cap;

static void logf_(const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof buf) n = sizeof buf - 1;
    fprintf(stdout, "recon: %s\n", buf);
    fflush(stdout);
    if (g_log_len + n + 2 > g_log_cap) {
        size_t cap = (g_log_cap + n + 2) * 2;
        char *p = realloc(g_log, cap);
        if (!p) return;
        g_log = p;
        g_log_cap = cap;
    }
    memcpy(g_log + g_log_len, buf, n);
    g_log_len += n;
    g_log[g_log_len++] = '\n';
    g_log[g_log_len] = 0;
}

/* an error message for result.json (the first one wins) */
static char g_error[1024];
static void set_error(const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    logf_("ERROR: %s", buf);
    if (!g_error[0]) snprintf(g_error, sizeof g_error, "%s", buf);
}

static void *xmalloc(size_t n) {
    void *p = calloc(1, n ? n : 1);
    if (!p) {
        fprintf(stderr, "recon: out of memory (%zu bytes)\n", n);
        exit(3);
    }
    return p;
}

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = xmalloc(cap);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            unsigned char *p = realloc(buf, cap);
            if (!p) { free(buf); fclose(f); return NULL; }
            buf = p;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    fclose(f);
    *len = n;
    return buf;
}

/* ---------------------------------------------------------------- a small JSON reader --- */
/* Enough JSON for job.json: objects, arrays, strings (with \uXXXX as '?'), numbers, literals. */
enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };
typedef struct jval {
    enum jtype type;
    double num;
    char *str;             /* J_STR value */
    char *key;             /* member name when inside an object */
    struct jval *child;    /* first element / member */
    struct jval *next;
} jval;

typedef struct { const char *s, *end; int err; } jparser;

static void jws(jparser *p) { while (p->s < p->end && isspace((unsigned char)*p->s)) p->s++; }

static char *jstring(jparser *p) {
    if (p->s >= p->end || *p->s != '"') { p->err = 1; return NULL; }
    p->s++;
    size_t cap = 64, n = 0;
    char *out = xmalloc(cap);
    while (p->s < p->end && *p->s != '"') {
        char c = *p->s++;
        if (c == '\\') {
            if (p->s >= p->end) { p->err = 1; break; }
            char e = *p->s++;
            switch (e) {
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case 'r': c = '\r'; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'u': c = '?'; p->s += (p->end - p->s >= 4) ? 4 : (p->end - p->s); break;
            default: c = e;
            }
        }
        if (n + 2 > cap) { cap *= 2; out = realloc(out, cap); if (!out) exit(3); }
        out[n++] = c;
    }
    if (p->s >= p->end) { p->err = 1; free(out); return NULL; }
    p->s++;
    out[n] = 0;
    return out;
}

static jval *jparse(jparser *p, int depth) {
    jws(p);
    if (p->s >= p->end || depth > 32) { p->err = 1; return NULL; }
    jval *v = xmalloc(sizeof *v);
    char c = *p->s;
    if (c == '{' || c == '[') {
        v->type = c == '{' ? J_OBJ : J_ARR;
        p->s++;
        jval **tail = &v->child;
        jws(p);
        if (p->s < p->end && *p->s == (c == '{' ? '}' : ']')) { p->s++; return v; }
        for (;;) {
            char *key = NULL;
            if (v->type == J_OBJ) {
                jws(p);
                key = jstring(p);
                jws(p);
                if (p->err || p->s >= p->end || *p->s != ':') { p->err = 1; return v; }
                p->s++;
            }
            jval *item = jparse(p, depth + 1);
            if (p->err) return v;
            item->key = key;
            *tail = item;
            tail = &item->next;
            jws(p);
            if (p->s < p->end && *p->s == ',') { p->s++; continue; }
            if (p->s < p->end && *p->s == (v->type == J_OBJ ? '}' : ']')) { p->s++; return v; }
            p->err = 1;
            return v;
        }
    }
    if (c == '"') { v->type = J_STR; v->str = jstring(p); return v; }
    if (!strncmp(p->s, "true", 4) || !strncmp(p->s, "false", 5)) {
        v->type = J_BOOL; v->num = *p->s == 't'; p->s += *p->s == 't' ? 4 : 5; return v;
    }
    if (!strncmp(p->s, "null", 4)) { v->type = J_NULL; p->s += 4; return v; }
    char *stop;
    v->type = J_NUM;
    v->num = strtod(p->s, &stop);
    if (stop == p->s) p->err = 1;
    p->s = stop;
    return v;
}

static jval *jget(jval *obj, const char *key) {
    if (!obj || obj->type != J_OBJ) return NULL;
    for (jval *m = obj->child; m; m = m->next)
        if (m->key && !strcmp(m->key, key)) return m;
    return NULL;
}

static void json_escaped(FILE *f, const char *s) {
    fputc('"', f);
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c == '\n') fputs("\\n", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c < 0x20 || c >= 0x7f) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

/* ---------------------------------------------------------------- refscan --------------- */
typedef struct {
    int revision;
    char manufacturer[65], model[65], software_version[65], device_serial[65];
    char station_name[65], institution[65], protocol_name[65];
    char date[9], time[7];                   /* DICOM DA, TM */
    char study_uid[65], series_uid[65], frame_uid[65];
    char patient_name[65], patient_id[65], patient_birth_date[9], patient_sex[3];
    uint32_t n_slices, n_views, n_detectors;
    double detector_spacing_mm, center_detector, start_angle_rad, angular_range_rad;
    double mu_water_per_mm, first_slice_z_mm, slice_spacing_mm, slice_thickness_mm, kvp;
    float *sino;                             /* [slice][view][detector] line integrals */
} scan_t;

static uint32_t rd_u32le(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
__attribute__((unused)) static float rd_f32le(const unsigned char *p) {
    uint32_t u = rd_u32le(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}
__attribute__((unused)) static void fixed_str(char *dst, size_t dstsize, const unsigned char *src, size_t n) {
    size_t i = 0;
    for (; i < n && i + 1 < dstsize && src[i]; i++) dst[i] = (char)src[i];
    dst[i] = 0;
    while (i > 0 && dst[i - 1] == ' ') dst[--i] = 0;
}

static int check_dims(const scan_t *s, const char *name) {
    if (s->n_slices < 1 || s->n_slices > MAX_SLICES || s->n_views < 2 || s->n_views > 8192 ||
        s->n_detectors < 2 || s->n_detectors > 8192) {
        set_error("%s: implausible dimensions %u slices x %u views x %u detectors", name,
                  s->n_slices, s->n_views, s->n_detectors);
        return -1;
    }
    if (!(s->detector_spacing_mm > 0) || !(s->mu_water_per_mm > 0) ||
        !(s->angular_range_rad > 0)) {
        set_error("%s: detector spacing, water attenuation and angular range must be > 0", name);
        return -1;
    }
    return 0;
}

#if REFSCAN_SOFTWARE_REVISION == 1
/* Revision 1: a fixed 1024-byte little-endian header, float32 LE payload (FORMAT.md). */
static int parse_rev1(const unsigned char *b, size_t len, scan_t *s, const char *name) {
    if (len < 1024) { set_error("%s: truncated refscan revision 1 header", name); return -1; }
    uint32_t hdr = rd_u32le(b + 8);
    if (hdr != 1024) { set_error("%s: header size %u, expected 1024", name, hdr); return -1; }
    s->n_slices = rd_u32le(b + 12);
    s->n_views = rd_u32le(b + 16);
    s->n_detectors = rd_u32le(b + 20);
    s->detector_spacing_mm = rd_f32le(b + 24);
    s->center_detector = rd_f32le(b + 28);
    s->start_angle_rad = rd_f32le(b + 32);
    s->angular_range_rad = rd_f32le(b + 36);
    s->mu_water_per_mm = rd_f32le(b + 40);
    s->first_slice_z_mm = rd_f32le(b + 44);
    s->slice_spacing_mm = rd_f32le(b + 48);
    s->slice_thickness_mm = rd_f32le(b + 52);
    s->kvp = rd_f32le(b + 56);
    fixed_str(s->manufacturer, sizeof s->manufacturer, b + 64, 64);
    fixed_str(s->model, sizeof s->model, b + 128, 32);
    fixed_str(s->software_version, sizeof s->software_version, b + 160, 32);
    fixed_str(s->device_serial, sizeof s->device_serial, b + 192, 32);
    fixed_str(s->station_name, sizeof s->station_name, b + 224, 32);
    fixed_str(s->institution, sizeof s->institution, b + 256, 64);
    char acq[17];
    fixed_str(acq, sizeof acq, b + 320, 16);
    if (strlen(acq) == 14) { memcpy(s->date, acq, 8); s->date[8] = 0; memcpy(s->time, acq + 8, 6); s->time[6] = 0; }
    fixed_str(s->study_uid, sizeof s->study_uid, b + 336, 64);
    fixed_str(s->series_uid, sizeof s->series_uid, b + 400, 64);
    fixed_str(s->frame_uid, sizeof s->frame_uid, b + 464, 64);
    fixed_str(s->patient_name, sizeof s->patient_name, b + 528, 64);
    fixed_str(s->patient_id, sizeof s->patient_id, b + 592, 64);
    fixed_str(s->patient_birth_date, sizeof s->patient_birth_date, b + 656, 8);
    fixed_str(s->patient_sex, sizeof s->patient_sex, b + 664, 4);
    fixed_str(s->protocol_name, sizeof s->protocol_name, b + 668, 64);
    if (check_dims(s, name)) return -1;
    size_t n = (size_t)s->n_slices * s->n_views * s->n_detectors;
    if (len < 1024 + n * 4) {
        set_error("%s: truncated payload (%zu bytes, header says %zu)", name, len - 1024, n * 4);
        return -1;
    }
    s->sino = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) s->sino[i] = rd_f32le(b + 1024 + 4 * i);
    return 0;
}
#endif

#if REFSCAN_SOFTWARE_REVISION == 2
/* Revision 2: key=value text header block, int16 big-endian quantized payload (FORMAT.md). */
static const char *kv_get(const char *text, size_t n, const char *key) {
    static char value[256];
    size_t klen = strlen(key);
    const char *p = text, *end = text + n;
    while (p < end) {
        const char *eol = memchr(p, '\n', end - p);
        if (!eol) eol = end;
        if ((size_t)(eol - p) > klen && !strncmp(p, key, klen) && p[klen] == '=') {
            size_t vlen = eol - p - klen - 1;
            if (vlen >= sizeof value) vlen = sizeof value - 1;
            memcpy(value, p + klen + 1, vlen);
            value[vlen] = 0;
            return value;
        }
        p = eol + 1;
    }
    return NULL;
}
static void kv_str(char *dst, size_t size, const char *text, size_t n, const char *key) {
    const char *v = kv_get(text, n, key);
    snprintf(dst, size, "%s", v ? v : "");
}
static int kv_num(double *dst, const char *text, size_t n, const char *key, const char *name) {
    const char *v = kv_get(text, n, key);
    char *stop;
    if (!v || !*v) { set_error("%s: header key %s is missing", name, key); return -1; }
    *dst = strtod(v, &stop);
    if (*stop) { set_error("%s: header key %s=%s is not a number", name, key, v); return -1; }
    return 0;
}

static int parse_rev2(const unsigned char *b, size_t len, scan_t *s, const char *name) {
    if (len < 12) { set_error("%s: truncated refscan revision 2 header", name); return -1; }
    uint32_t tlen = rd_u32le(b + 8);
    if (tlen > 65536 || 12 + (size_t)tlen > len) {
        set_error("%s: truncated refscan revision 2 text header", name);
        return -1;
    }
    const char *t = (const char *)b + 12;
    const char *enc = kv_get(t, tlen, "payload_encoding");
    if (!enc || strcmp(enc, "int16-be")) {
        set_error("%s: payload_encoding %s is not int16-be", name, enc ? enc : "(missing)");
        return -1;
    }
    double d[16], scale, offset;
    static const char *keys[] = {"slices", "views", "detectors", "detector_spacing_mm",
        "center_detector", "start_angle_deg", "angular_range_deg", "mu_water_per_mm",
        "first_slice_z_mm", "slice_spacing_mm", "slice_thickness_mm"};
    for (int i = 0; i < 11; i++)
        if (kv_num(&d[i], t, tlen, keys[i], name)) return -1;
    if (kv_num(&scale, t, tlen, "payload_scale", name) ||
        kv_num(&offset, t, tlen, "payload_offset", name))
        return -1;
    if (kv_get(t, tlen, "kvp") && kv_num(&s->kvp, t, tlen, "kvp", name)) return -1;
    s->n_slices = (uint32_t)d[0];
    s->n_views = (uint32_t)d[1];
    s->n_detectors = (uint32_t)d[2];
    s->detector_spacing_mm = d[3];
    s->center_detector = d[4];
    s->start_angle_rad = d[5] * M_PI / 180.0;
    s->angular_range_rad = d[6] * M_PI / 180.0;
    s->mu_water_per_mm = d[7];
    s->first_slice_z_mm = d[8];
    s->slice_spacing_mm = d[9];
    s->slice_thickness_mm = d[10];
    kv_str(s->manufacturer, sizeof s->manufacturer, t, tlen, "manufacturer");
    kv_str(s->model, sizeof s->model, t, tlen, "model");
    kv_str(s->software_version, sizeof s->software_version, t, tlen, "software_version");
    kv_str(s->device_serial, sizeof s->device_serial, t, tlen, "device_serial");
    kv_str(s->station_name, sizeof s->station_name, t, tlen, "station_name");
    kv_str(s->institution, sizeof s->institution, t, tlen, "institution");
    kv_str(s->protocol_name, sizeof s->protocol_name, t, tlen, "protocol_name");
    kv_str(s->study_uid, sizeof s->study_uid, t, tlen, "study_uid");
    kv_str(s->series_uid, sizeof s->series_uid, t, tlen, "series_uid");
    kv_str(s->frame_uid, sizeof s->frame_uid, t, tlen, "frame_of_reference_uid");
    kv_str(s->patient_name, sizeof s->patient_name, t, tlen, "patient_name");
    kv_str(s->patient_id, sizeof s->patient_id, t, tlen, "patient_id");
    kv_str(s->patient_birth_date, sizeof s->patient_birth_date, t, tlen, "patient_birth_date");
    kv_str(s->patient_sex, sizeof s->patient_sex, t, tlen, "patient_sex");
    /* acquired=YYYY-MM-DDTHH:MM:SS */
    const char *acq = kv_get(t, tlen, "acquired");
    if (acq && strlen(acq) >= 19) {
        snprintf(s->date, sizeof s->date, "%.4s%.2s%.2s", acq, acq + 5, acq + 8);
        snprintf(s->time, sizeof s->time, "%.2s%.2s%.2s", acq + 11, acq + 14, acq + 17);
    }
    if (check_dims(s, name)) return -1;
    size_t n = (size_t)s->n_slices * s->n_views * s->n_detectors;
    const unsigned char *pay = b + 12 + tlen;
    if (len - 12 - tlen < n * 2) {
        set_error("%s: truncated payload (%zu bytes, header says %zu)", name,
                  len - 12 - tlen, n * 2);
        return -1;
    }
    s->sino = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        int16_t q = (int16_t)((uint16_t)pay[2 * i] << 8 | pay[2 * i + 1]);
        s->sino[i] = (float)(q * scale + offset);
    }
    return 0;
}
#endif

static int parse_refscan(const unsigned char *b, size_t len, scan_t *s, const char *name) {
    if (len < 8 || memcmp(b, "RFSCN\0", 6)) {
        set_error("%s: not a refscan file (no RFSCN magic)", name);
        return -1;
    }
    s->revision = b[6] | b[7] << 8;
    if (s->revision != REFSCAN_SOFTWARE_REVISION) {
        if (s->revision > REFSCAN_SOFTWARE_REVISION)
            set_error("%s: refscan revision %d is newer than this software (R%d); "
                      "reconstruct it with a later " PRODUCT " version",
                      name, s->revision, REFSCAN_SOFTWARE_REVISION);
        else
            set_error("%s: refscan revision %d is no longer supported by this software "
                      "(R%d reads revision %d only); reconstruct it with " PRODUCT " %d.0",
                      name, s->revision, REFSCAN_SOFTWARE_REVISION, REFSCAN_SOFTWARE_REVISION,
                      s->revision);
        return -1;
    }
#if REFSCAN_SOFTWARE_REVISION == 1
    return parse_rev1(b, len, s, name);
#else
    return parse_rev2(b, len, s, name);
#endif
}

/* ---------------------------------------------------------------- reconstruction -------- */
/* Filtered back-projection, Kak & Slaney ch. 3.3 (parallel beam): convolve every projection
 * with h(0) = 1/(4 d^2), h(n odd) = -1/(n pi d)^2, h(n even) = 0, times d; back-project with
 * linear interpolation, times (angular range / views). Returns attenuation per mm. */
static void fbp(const scan_t *s, const float *sino, int matrix, double pixel_mm, double *img) {
    int nd = (int)s->n_detectors, nv = (int)s->n_views;
    double d = s->detector_spacing_mm;
    double *h = xmalloc(sizeof(double) * (2 * nd - 1));
    for (int n = -(nd - 1); n < nd; n++) {
        double v = 0.0;
        if (n == 0) v = 1.0 / (4.0 * d * d);
        else if (n & 1) v = -1.0 / ((double)n * n * M_PI * M_PI * d * d);
        h[n + nd - 1] = v;
    }
    double *q = xmalloc(sizeof(double) * nd);
    double *cs = xmalloc(sizeof(double) * matrix);
    memset(img, 0, sizeof(double) * matrix * matrix);
    double dtheta = s->angular_range_rad / nv;
    for (int v = 0; v < nv; v++) {
        const float *p = sino + (size_t)v * nd;
        for (int j = 0; j < nd; j++) {
            double acc = 0.0;
            const double *hj = h + j + nd - 1;  /* hj[-m] = h[j - m] */
            for (int m = 0; m < nd; m++) acc += hj[-m] * p[m];
            q[j] = acc * d;
        }
        double th = s->start_angle_rad + v * dtheta, c = cos(th), sn = sin(th);
        for (int col = 0; col < matrix; col++) cs[col] = (col - (matrix - 1) / 2.0) * pixel_mm * c;
        for (int row = 0; row < matrix; row++) {
            double y = (row - (matrix - 1) / 2.0) * pixel_mm;
            double ys = y * sn;
            double *out = img + (size_t)row * matrix;
            for (int col = 0; col < matrix; col++) {
                double u = (cs[col] + ys) / d + s->center_detector;
                if (u < 0.0 || u > nd - 1) continue;
                int i0 = (int)u;
                double f = u - i0;
                double val = i0 + 1 < nd ? q[i0] * (1.0 - f) + q[i0 + 1] * f : q[i0];
                out[col] += val;
            }
        }
    }
    for (int i = 0; i < matrix * matrix; i++) img[i] *= dtheta;
    free(h);
    free(q);
    free(cs);
}

/* ---------------------------------------------------------------- UIDs ----------------- */
/* 2.25.<128-bit decimal>: FNV-1a 128 of a text naming what the UID identifies. */
typedef unsigned __int128 u128;
static u128 fnv128(const void *data, size_t n, u128 h) {
    const u128 prime = ((u128)1 << 88) + 0x13b;
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) { h ^= p[i]; h *= prime; }
    return h;
}
static u128 fnv128_init(void) {
    return ((u128)0x6c62272e07bb0142ULL << 64) | 0x62b821756295c58dULL;
}
static void uid_from(char out[65], const char *text) {
    u128 h = fnv128(text, strlen(text), fnv128_init());
    h &= ~((u128)1 << 127) ; /* keep it below 2^127: 39 digits at most */
    if (h == 0) h = 1;
    char digits[48];
    int n = 0;
    while (h) { digits[n++] = (char)('0' + (int)(h % 10)); h /= 10; }
    int k = snprintf(out, 65, "2.25.");
    while (n) out[k++] = digits[--n];
    out[k] = 0;
}

/* ---------------------------------------------------------------- DICOM writer ---------- */
typedef struct { unsigned char *b; size_t n, cap; } buf_t;
static void put(buf_t *w, const void *p, size_t n) {
    if (w->n + n > w->cap) {
        w->cap = (w->n + n) * 2 + 1024;
        w->b = realloc(w->b, w->cap);
        if (!w->b) exit(3);
    }
    memcpy(w->b + w->n, p, n);
    w->n += n;
}
static void put16(buf_t *w, unsigned v) { unsigned char b[2] = {v & 255, v >> 8 & 255}; put(w, b, 2); }
static void put32(buf_t *w, uint32_t v) {
    unsigned char b[4] = {v & 255, v >> 8 & 255, v >> 16 & 255, v >> 24 & 255};
    put(w, b, 4);
}
static int long_vr(const char *vr) {
    return !strcmp(vr, "OB") || !strcmp(vr, "OW") || !strcmp(vr, "OF") || !strcmp(vr, "SQ") ||
           !strcmp(vr, "UT") || !strcmp(vr, "UN");
}
static void elem(buf_t *w, unsigned g, unsigned e, const char *vr, const void *v, size_t n) {
    size_t padded = n + (n & 1);
    put16(w, g);
    put16(w, e);
    put(w, vr, 2);
    if (long_vr(vr)) { put16(w, 0); put32(w, (uint32_t)padded); }
    else put16(w, (unsigned)padded);
    put(w, v, n);
    if (n & 1) {
        unsigned char pad = !strcmp(vr, "UI") || !strcmp(vr, "OB") ? 0 : ' ';
        put(w, &pad, 1);
    }
}
/* a text element; the value is cut to the VR's maximum length */
static void text(buf_t *w, unsigned g, unsigned e, const char *vr, const char *s) {
    size_t max = 64;
    if (!strcmp(vr, "SH") || !strcmp(vr, "CS") || !strcmp(vr, "DS")) max = 16;
    else if (!strcmp(vr, "DA")) max = 8;
    else if (!strcmp(vr, "TM") || !strcmp(vr, "IS")) max = 16;
    else if (!strcmp(vr, "ST") || !strcmp(vr, "LT")) max = 1024;
    size_t n = strlen(s);
    /* multi-valued elements (backslash) may exceed one value's maximum */
    if (!strchr(s, '\\') && n > max) n = max;
    elem(w, g, e, vr, s, n);
}
static void us(buf_t *w, unsigned g, unsigned e, unsigned v) {
    unsigned char b[2] = {v & 255, v >> 8 & 255};
    elem(w, g, e, "US", b, 2);
}
static void ds(char *out, double v) {
    /* a DS value of at most 16 characters */
    for (int digits = 10; digits > 0; digits--) {
        snprintf(out, 17, "%.*g", digits, v);
        char tmp[64];
        snprintf(tmp, sizeof tmp, "%.*g", digits, v);
        if (strlen(tmp) <= 16) { strcpy(out, tmp); return; }
    }
}

static int valid_date(const char *d) {
    if (strlen(d) != 8) return 0;
    for (int i = 0; i < 8; i++) if (!isdigit((unsigned char)d[i])) return 0;
    return 1;
}

typedef struct {
    const scan_t *s;
    const char *series_uid, *sop_uid, *description, *software_versions, *derivation;
    int instance, matrix, series_number;
    double pixel_mm, z, fov;
    const uint16_t *pixels;
} image_t;

static int write_dicom(const char *path, const image_t *im) {
    const scan_t *s = im->s;
    buf_t body = {0}, meta = {0};
    char v[256];
    /* file meta information, group 0002 */
    buf_t m = {0};
    unsigned char version[2] = {0, 1};
    elem(&m, 0x0002, 0x0001, "OB", version, 2);
    text(&m, 0x0002, 0x0002, "UI", CT_IMAGE_STORAGE);
    text(&m, 0x0002, 0x0003, "UI", im->sop_uid);
    text(&m, 0x0002, 0x0010, "UI", EXPLICIT_VR_LE);
    text(&m, 0x0002, 0x0012, "UI", IMPLEMENTATION_UID);
    text(&m, 0x0002, 0x0013, "SH", "REFRECON_" SOFTWARE_VERSION);
    unsigned char len[4] = {m.n & 255, m.n >> 8 & 255, m.n >> 16 & 255, m.n >> 24 & 255};
    elem(&meta, 0x0002, 0x0000, "UL", len, 4);
    put(&meta, m.b, m.n);

    text(&body, 0x0008, 0x0005, "CS", "ISO_IR 100");
    text(&body, 0x0008, 0x0008, "CS", "DERIVED\\PRIMARY\\AXIAL");
    text(&body, 0x0008, 0x0016, "UI", CT_IMAGE_STORAGE);
    text(&body, 0x0008, 0x0018, "UI", im->sop_uid);
    for (unsigned e = 0x20; e <= 0x23; e++) text(&body, 0x0008, e, "DA", s->date);
    for (unsigned e = 0x30; e <= 0x33; e++) text(&body, 0x0008, e, "TM", s->time);
    text(&body, 0x0008, 0x0050, "SH", "");
    text(&body, 0x0008, 0x0060, "CS", "CT");
    text(&body, 0x0008, 0x0070, "LO", s->manufacturer);
    if (s->institution[0]) text(&body, 0x0008, 0x0080, "LO", s->institution);
    text(&body, 0x0008, 0x0090, "PN", "");
    if (s->station_name[0]) text(&body, 0x0008, 0x1010, "SH", s->station_name);
    text(&body, 0x0008, 0x103E, "LO", im->description);
    if (s->model[0]) text(&body, 0x0008, 0x1090, "LO", s->model);
    text(&body, 0x0008, 0x2111, "ST", im->derivation);
    text(&body, 0x0010, 0x0010, "PN", s->patient_name);
    text(&body, 0x0010, 0x0020, "LO", s->patient_id);
    text(&body, 0x0010, 0x0030, "DA", valid_date(s->patient_birth_date) ? s->patient_birth_date : "");
    text(&body, 0x0010, 0x0040, "CS",
         !strcmp(s->patient_sex, "M") || !strcmp(s->patient_sex, "F") || !strcmp(s->patient_sex, "O")
             ? s->patient_sex : "");
    ds(v, s->slice_thickness_mm);
    text(&body, 0x0018, 0x0050, "DS", v);
    if (s->kvp > 0) { ds(v, s->kvp); text(&body, 0x0018, 0x0060, "DS", v); }
    else text(&body, 0x0018, 0x0060, "DS", "");
    if (s->device_serial[0]) text(&body, 0x0018, 0x1000, "LO", s->device_serial);
    text(&body, 0x0018, 0x1020, "LO", im->software_versions);
    if (s->protocol_name[0]) text(&body, 0x0018, 0x1030, "LO", s->protocol_name);
    ds(v, im->fov);
    text(&body, 0x0018, 0x1100, "DS", v);
    text(&body, 0x0018, 0x1210, "SH", "RAMP");
    text(&body, 0x0018, 0x5100, "CS", "HFS");
    text(&body, 0x0020, 0x000D, "UI", s->study_uid);
    text(&body, 0x0020, 0x000E, "UI", im->series_uid);
    text(&body, 0x0020, 0x0010, "SH", "1");
    snprintf(v, sizeof v, "%d", im->series_number);
    text(&body, 0x0020, 0x0011, "IS", v);
    text(&body, 0x0020, 0x0012, "IS", "1");
    snprintf(v, sizeof v, "%d", im->instance);
    text(&body, 0x0020, 0x0013, "IS", v);
    double origin = -(im->matrix - 1) / 2.0 * im->pixel_mm;
    char a[20], b[20], c[20];
    ds(a, origin); ds(b, origin); ds(c, im->z);
    snprintf(v, sizeof v, "%s\\%s\\%s", a, b, c);
    text(&body, 0x0020, 0x0032, "DS", v);
    text(&body, 0x0020, 0x0037, "DS", "1\\0\\0\\0\\1\\0");
    text(&body, 0x0020, 0x0052, "UI", s->frame_uid);
    text(&body, 0x0020, 0x0060, "CS", "");
    text(&body, 0x0020, 0x1040, "LO", "");
    text(&body, 0x0020, 0x1041, "DS", c);
    us(&body, 0x0028, 0x0002, 1);
    text(&body, 0x0028, 0x0004, "CS", "MONOCHROME2");
    us(&body, 0x0028, 0x0010, (unsigned)im->matrix);
    us(&body, 0x0028, 0x0011, (unsigned)im->matrix);
    ds(a, im->pixel_mm);
    snprintf(v, sizeof v, "%s\\%s", a, a);
    text(&body, 0x0028, 0x0030, "DS", v);
    us(&body, 0x0028, 0x0100, 16);
    us(&body, 0x0028, 0x0101, 16);
    us(&body, 0x0028, 0x0102, 15);
    us(&body, 0x0028, 0x0103, 0);
    text(&body, 0x0028, 0x1050, "DS", "40");
    text(&body, 0x0028, 0x1051, "DS", "400");
    text(&body, 0x0028, 0x1052, "DS", "-1024");
    text(&body, 0x0028, 0x1053, "DS", "1");
    text(&body, 0x0028, 0x1054, "LO", "HU");
    size_t np = (size_t)im->matrix * im->matrix;
    unsigned char *px = xmalloc(np * 2);
    for (size_t i = 0; i < np; i++) { px[2 * i] = im->pixels[i] & 255; px[2 * i + 1] = im->pixels[i] >> 8; }
    elem(&body, 0x7FE0, 0x0010, "OW", px, np * 2);
    free(px);

    FILE *f = fopen(path, "wb");
    if (!f) { set_error("cannot write %s: %s", path, strerror(errno)); return -1; }
    static const unsigned char preamble[128];
    int ok = fwrite(preamble, 1, 128, f) == 128 && fwrite("DICM", 1, 4, f) == 4 &&
             fwrite(meta.b, 1, meta.n, f) == meta.n && fwrite(body.b, 1, body.n, f) == body.n;
    ok = (fclose(f) == 0) && ok;
    free(body.b); free(meta.b); free(m.b);
    if (!ok) { set_error("cannot write %s: %s", path, strerror(errno)); return -1; }
    return 0;
}

/* ---------------------------------------------------------------- the job --------------- */
typedef struct { char **items; int n, cap; } strlist;
static void strlist_add(strlist *l, const char *s) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->items = realloc(l->items, sizeof(char *) * l->cap);
        if (!l->items) exit(3);
    }
    l->items[l->n++] = strdup(s);
}

static void safe_stem(char *out, size_t size, const char *input) {
    const char *base = strrchr(input, '/');
    base = base ? base + 1 : input;
    size_t k = 0;
    for (; *base && *base != '.' && k + 1 < size; base++)
        out[k++] = isalnum((unsigned char)*base) || *base == '-' || *base == '_' ? *base : '_';
    out[k] = 0;
    if (!k) snprintf(out, size, "image");
}

static int reconstruct(const char *job, const char *input, jval *params, strlist *outputs) {
    char path[4096];
    if (strstr(input, "..") || input[0] == '/' || strncmp(input, "input/", 6)) {
        set_error("%s: inputs must be paths under input/", input);
        return -1;
    }
    snprintf(path, sizeof path, "%s/%s", job, input);
    size_t len;
    unsigned char *bytes = read_file(path, &len);
    if (!bytes) { set_error("%s: cannot read: %s", input, strerror(errno)); return -1; }
    scan_t s;
    memset(&s, 0, sizeof s);
    if (parse_refscan(bytes, len, &s, input)) { free(bytes); return -1; }
    logf_("%s: refscan revision %d, %u slice(s) x %u views x %u detectors, %s %s %s", input,
          s.revision, s.n_slices, s.n_views, s.n_detectors, s.manufacturer, s.model,
          s.software_version);

    int matrix = 256;
    double fov = s.n_detectors * s.detector_spacing_mm;
    jval *pm = jget(params, "matrix"), *pf = jget(params, "fov_mm"), *ps = jget(params, "series_number");
    if (pm && pm->type == J_NUM) matrix = (int)pm->num;
    if (pf && pf->type == J_NUM) fov = pf->num;
    int series_number = 900 + REFSCAN_SOFTWARE_REVISION;
    if (ps && ps->type == J_NUM) series_number = (int)ps->num;
    if (matrix < 16 || matrix > MAX_MATRIX || !(fov > 0)) {
        set_error("params: matrix must be 16..%d and fov_mm > 0", MAX_MATRIX);
        free(bytes); free(s.sino);
        return -1;
    }
    double pixel_mm = fov / matrix;

    /* UIDs: the raw header's study and frame of reference; a series and instances of ours */
    char key[1024], file_hash[65], series_uid[65];
    u128 fh = fnv128(bytes, len, fnv128_init());
    snprintf(file_hash, sizeof file_hash, "%016llx%016llx", (unsigned long long)(fh >> 64),
             (unsigned long long)fh);
    if (!s.study_uid[0]) { snprintf(key, sizeof key, "study|%s", file_hash); uid_from(s.study_uid, key); }
    if (!s.frame_uid[0]) { snprintf(key, sizeof key, "frame|%s", file_hash); uid_from(s.frame_uid, key); }
    snprintf(key, sizeof key, PRODUCT "|" SOFTWARE_VERSION "|series|%s|%s|matrix=%d|fov=%.6g",
             s.series_uid, file_hash, matrix, fov);
    uid_from(series_uid, key);
    if (!valid_date(s.date)) strcpy(s.date, "19700101");
    if (strlen(s.time) != 6 || strspn(s.time, "0123456789") != 6) strcpy(s.time, "000000");

    char description[65], software[128], derivation[512], stem[64];
    snprintf(description, sizeof description, PRODUCT " " SOFTWARE_VERSION " FBP ramp");
    if (s.software_version[0])
        snprintf(software, sizeof software, PRODUCT " " SOFTWARE_VERSION "\\%s", s.software_version);
    else
        snprintf(software, sizeof software, PRODUCT " " SOFTWARE_VERSION);
    snprintf(derivation, sizeof derivation,
             "Parallel-beam filtered back-projection (ramp filter, linear interpolation) of "
             "refscan revision %d projections by " PRODUCT " " SOFTWARE_VERSION,
             s.revision);
    safe_stem(stem, sizeof stem, input);

    double *img = xmalloc(sizeof(double) * matrix * matrix);
    uint16_t *px = xmalloc(sizeof(uint16_t) * matrix * matrix);
    int rc = 0;
    for (uint32_t sl = 0; sl < s.n_slices && !rc; sl++) {
        fbp(&s, s.sino + (size_t)sl * s.n_views * s.n_detectors, matrix, pixel_mm, img);
        for (int i = 0; i < matrix * matrix; i++) {
            double hu = 1000.0 * (img[i] - s.mu_water_per_mm) / s.mu_water_per_mm;
            double stored = floor(hu + 1024.0 + 0.5);
            px[i] = stored < 0 ? 0 : stored > 65535 ? 65535 : (uint16_t)stored;
        }
        char sop_uid[65], name[256], out[4200];
        snprintf(key, sizeof key, "%s|instance|%u", series_uid, sl + 1);
        uid_from(sop_uid, key);
        snprintf(name, sizeof name, "output/%s-%04u.dcm", stem, sl + 1);
        snprintf(out, sizeof out, "%s/%s", job, name);
        image_t im = {&s, series_uid, sop_uid, description, software, derivation, (int)sl + 1,
                      matrix, series_number, pixel_mm,
                      s.first_slice_z_mm + sl * s.slice_spacing_mm, fov, px};
        rc = write_dicom(out, &im);
        if (!rc) { strlist_add(outputs, name); logf_("wrote %s", name); }
    }
    free(img); free(px); free(bytes); free(s.sino);
    return rc;
}

static int write_result(const char *job, const char *status, strlist *outputs) {
    char path[4096], tmp[4100];
    snprintf(path, sizeof path, "%s/result.json", job);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) { fprintf(stderr, "recon: cannot write %s: %s\n", tmp, strerror(errno)); return -1; }
    fprintf(f, "{\"status\": ");
    json_escaped(f, status);
    fprintf(f, ", \"software_version\": \"" SOFTWARE_VERSION "\", \"software\": \"" PRODUCT
               "\", \"refscan_revision\": %d, \"message\": ", REFSCAN_SOFTWARE_REVISION);
    json_escaped(f, g_error[0] ? g_error : "reconstructed");
    fprintf(f, ", \"outputs\": [");
    for (int i = 0; i < outputs->n; i++) {
        if (i) fputs(", ", f);
        json_escaped(f, outputs->items[i]);
    }
    fprintf(f, "], \"log\": ");
    json_escaped(f, g_log ? g_log : "");
    fprintf(f, "}\n");
    if (fclose(f)) return -1;
    return rename(tmp, path);
}

int main(int argc, char **argv) {
    const char *job = "/job";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--version")) {
            printf(PRODUCT " " SOFTWARE_VERSION " (reads refscan revision %d)\n",
                   REFSCAN_SOFTWARE_REVISION);
            return 0;
        }
        if (!strcmp(argv[i], "--job") && i + 1 < argc) job = argv[++i];
        else {
            fprintf(stderr, "usage: recon [--job DIR] [--version]\n");
            return 2;
        }
    }
    logf_(PRODUCT " " SOFTWARE_VERSION " (reads refscan revision %d)", REFSCAN_SOFTWARE_REVISION);
    strlist outputs = {0};
    char path[4096];
    snprintf(path, sizeof path, "%s/output", job);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/job.json", job);
    size_t len;
    unsigned char *text = read_file(path, &len);
    jval *root = NULL;
    if (!text) set_error("cannot read job.json: %s", strerror(errno));
    else {
        jparser p = {(const char *)text, (const char *)text + len, 0};
        root = jparse(&p, 0);
        if (p.err || !root || root->type != J_OBJ) set_error("job.json is not a JSON object");
    }
    jval *inputs = root && !g_error[0] ? jget(root, "inputs") : NULL;
    jval *protocol = jget(root, "protocol");
    if (!g_error[0] && protocol && (protocol->type != J_NUM || protocol->num != 1))
        set_error("job.json protocol is not 1");
    if (!g_error[0] && (!inputs || inputs->type != J_ARR || !inputs->child))
        set_error("job.json lists no inputs");
    jval *params = jget(root, "params");
    jval *id = jget(root, "job_id");
    if (id && id->type == J_STR) logf_("job %s", id->str);
    int failed = g_error[0] != 0;
    if (!failed)
        for (jval *in = inputs->child; in; in = in->next) {
            if (in->type != J_STR) { set_error("job.json inputs must be strings"); failed = 1; continue; }
            if (reconstruct(job, in->str, params, &outputs)) failed = 1;
        }
    if (write_result(job, failed ? "error" : "ok", &outputs)) return 1;
    return failed ? 1 : 0;
}
