/*
 * time_text: RFC 3339 UTC times "YYYY-MM-DDTHH:MM:SSZ" (time_text.h), with
 * the civil-date arithmetic done here so that neither the TZ nor the C
 * library's time functions are involved.
 */
#include "time_text.h"

#include <stdio.h>
#include <string.h>

#include "error.h"

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * days_from_civil), so that times need neither timegm() nor the TZ. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y_out, unsigned *m_out, unsigned *d_out)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const int64_t y = (int64_t)yoe + era * 400;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    const unsigned d = doy - (153 * mp + 2) / 5 + 1;
    const unsigned m = mp < 10 ? mp + 3 : mp - 9;
    *y_out = y + (m <= 2);
    *m_out = m;
    *d_out = d;
}

static int is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int ps_time_parse(int64_t *out, const char *str)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";
    if (out)
        *out = 0;
    if (!out || !str)
        return ps_error_set(PKGSTORE_EINVALID, "time: missing");
    size_t len = strlen(str);
    for (size_t i = 0; i < sizeof(shape) - 1; i++) {
        char c = i < len ? str[i] : '\0';
        int ok = shape[i] == 'd' ? (c >= '0' && c <= '9') : c == shape[i];
        if (!ok)
            return ps_error_set(PKGSTORE_EINVALID,
                                "not an RFC 3339 UTC time YYYY-MM-DDTHH:MM:SSZ "
                                "(unexpected %s at position %zu)",
                                c ? "character" : "end", i + 1);
    }
    if (len != sizeof(shape) - 1)
        return ps_error_set(PKGSTORE_EINVALID,
                            "not an RFC 3339 UTC time YYYY-MM-DDTHH:MM:SSZ "
                            "(trailing characters at position %zu)",
                            sizeof(shape));
#define DIGITS2(p) ((unsigned)((p)[0] - '0') * 10 + (unsigned)((p)[1] - '0'))
    int64_t year = (int64_t)DIGITS2(str) * 100 + DIGITS2(str + 2);
    unsigned month = DIGITS2(str + 5), day = DIGITS2(str + 8);
    unsigned hour = DIGITS2(str + 11), minute = DIGITS2(str + 14), second = DIGITS2(str + 17);
#undef DIGITS2
    static const unsigned mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (month < 1 || month > 12)
        return ps_error_set(PKGSTORE_EINVALID, "month %02u out of range", month);
    unsigned last = mdays[month - 1] + (month == 2 && is_leap(year));
    if (day < 1 || day > last)
        return ps_error_set(PKGSTORE_EINVALID, "day %02u out of range", day);
    if (hour > 23 || minute > 59 || second > 59)
        return ps_error_set(PKGSTORE_EINVALID, "time of day %02u:%02u:%02u out of range", hour,
                            minute, second);
    *out = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second;
    return 0;
}

int ps_time_format(char out[PS_TIME_SIZE], int64_t seconds)
{
    if (!out)
        return ps_error_set(PKGSTORE_EINVALID, "time: no buffer");
    out[0] = '\0';
    if (seconds < PS_TIME_MIN || seconds > PS_TIME_MAX)
        return ps_error_set(PKGSTORE_EINVALID, "time: %lld is outside the years 0000-9999",
                            (long long)seconds);
    int64_t days = seconds >= 0 ? seconds / 86400 : -((-seconds + 86399) / 86400);
    int64_t rem = seconds - days * 86400;
    int64_t year;
    unsigned month, day;
    civil_from_days(days, &year, &month, &day);
    char text[64]; /* roomy: the compiler cannot see the ranges checked above */
    snprintf(text, sizeof(text), "%04u-%02u-%02uT%02u:%02u:%02uZ", (unsigned)year, month, day,
             (unsigned)(rem / 3600), (unsigned)(rem / 60 % 60), (unsigned)(rem % 60));
    memcpy(out, text, PS_TIME_SIZE - 1);
    out[PS_TIME_SIZE - 1] = '\0';
    return 0;
}
