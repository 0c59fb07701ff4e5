<?php

namespace WHMCS\Module\Server\Hostwright;

/**
 * The product's module settings (WHMCS's configoption1…) and what they mean to hostwright:
 * the mode, the plan an order and a change-plan carry, and where a vanity order's label is.
 *
 * The plan is passed on as the product says it; hostwright checks it (a value it refuses
 * comes back as a readable 422). An empty limit is unlimited.
 */
class ProductOptions
{
    const MODES = ['split', 'unified', 'vanity'];
    const DEFAULT_LABEL_FIELD = 'Vanity label';

    /** configoptionN => the plan field it carries (docs/api.md, "The plan") */
    const PLAN_FIELDS = [
        3 => 'disk_mb',
        4 => 'bandwidth_mb',
        5 => 'web_domains',
        6 => 'web_aliases',
        7 => 'mail_domains',
        8 => 'mail_accounts',
        9 => 'databases',
        10 => 'dns_domains',
        11 => 'cron_jobs',
        12 => 'mailbox_quota_mb',
    ];
    const MODE = 1;
    const PACKAGE = 2;
    const PHP_VERSION = 13;
    const VANITY_DOMAIN = 14;
    const LABEL_FIELD = 15;

    /** What hostwright_ConfigOptions returns, in configoption order. */
    public static function definitions(): array
    {
        $limit = function (string $name, string $unit): array {
            return [
                'FriendlyName' => $name,
                'Type' => 'text',
                'Size' => '10',
                'Description' => $unit . '; empty or "unlimited" for no limit',
                'SimpleMode' => true,
            ];
        };
        return [
            'mode' => [
                'FriendlyName' => 'Mode',
                'Type' => 'dropdown',
                'Options' => [
                    'split' => 'Split (web, mail and DNS on nodes of their own)',
                    'unified' => 'Unified (one node serves all)',
                    'vanity' => 'Vanity (<label>.<your domain>)',
                ],
                'Default' => 'split',
                'SimpleMode' => true,
            ],
            'package' => [
                'FriendlyName' => 'Hestia package',
                'Type' => 'text',
                'Size' => '25',
                'Default' => 'default',
                'Loader' => 'hostwright_PackageLoader',
                'Description' => 'the plan name the Hestia package is made from',
                'SimpleMode' => true,
            ],
            'disk_mb' => $limit('Disk', 'MB'),
            'bandwidth_mb' => $limit('Bandwidth', 'MB a month'),
            'web_domains' => $limit('Web domains', 'count'),
            'web_aliases' => $limit('Web aliases', 'count'),
            'mail_domains' => $limit('Mail domains', 'count'),
            'mail_accounts' => $limit('Mail accounts', 'count'),
            'databases' => $limit('Databases', 'count'),
            'dns_domains' => $limit('DNS domains', 'count'),
            'cron_jobs' => $limit('Cron jobs', 'count'),
            'mailbox_quota_mb' => $limit('Mailbox quota (vanity)', 'MB'),
            'php_version' => [
                'FriendlyName' => 'PHP version',
                'Type' => 'text',
                'Size' => '5',
                'Description' => 'like 8.2; empty for the web node\'s default',
                'SimpleMode' => true,
            ],
            'vanity_domain' => [
                'FriendlyName' => 'Vanity domain',
                'Type' => 'text',
                'Size' => '30',
                'Description' => 'vanity only: HOSTWRIGHT_VANITY_DOMAIN, for orders without a domain (<label>.<this>)',
            ],
            'label_field' => [
                'FriendlyName' => 'Label custom field',
                'Type' => 'text',
                'Size' => '25',
                'Default' => self::DEFAULT_LABEL_FIELD,
                'Description' => 'vanity only: the product custom field the customer types the label in',
            ],
        ];
    }

    public static function mode(array $params): string
    {
        $mode = strtolower(trim(self::option($params, self::MODE)));
        return $mode === '' ? 'split' : $mode;
    }

    /** The plan object of an order or a change-plan. */
    public static function plan(array $params): array
    {
        $package = trim(self::option($params, self::PACKAGE));
        $plan = ['package' => $package === '' ? 'default' : $package];
        foreach (self::PLAN_FIELDS as $index => $field) {
            $value = trim(self::option($params, $index));
            if ($value === '' || strtolower($value) === 'unlimited') {
                continue; // left out: unlimited
            }
            $plan[$field] = ctype_digit($value) ? (int) $value : $value;
        }
        $php = trim(self::option($params, self::PHP_VERSION));
        if ($php !== '') {
            $plan['php_version'] = $php;
        }
        return $plan;
    }

    /** The vanity label the customer typed in the product's custom field; '' when none. */
    public static function label(array $params): string
    {
        $field = trim(self::option($params, self::LABEL_FIELD));
        $field = $field === '' ? self::DEFAULT_LABEL_FIELD : $field;
        $fields = is_array($params['customfields'] ?? null) ? $params['customfields'] : [];
        return strtolower(trim((string) ($fields[$field] ?? '')));
    }

    /** The service's domain: WHMCS's, or for a vanity order without one, <label>.<vanity domain>. */
    public static function domain(array $params): string
    {
        $domain = strtolower(trim((string) ($params['domain'] ?? '')));
        if ($domain !== '' || self::mode($params) !== 'vanity') {
            return $domain;
        }
        $vanity = strtolower(trim(self::option($params, self::VANITY_DOMAIN)));
        $label = self::label($params);
        return ($label === '' || $vanity === '') ? '' : $label . '.' . $vanity;
    }

    private static function option(array $params, int $index): string
    {
        $value = $params['configoption' . $index] ?? '';
        return is_scalar($value) ? (string) $value : '';
    }
}
